//! `aop bench auth`: what checking one bearer token costs the gateway (docs/protocol.md §8.2),
//! for each kind of token it accepts: a static token, and JWTs signed with ES256, EdDSA and
//! RS256 (2048-bit). The budget is 50 µs per check.
//!
//! The checks go through the gateway's own verifier, built from a real auth file written to
//! a temporary directory, so the figure includes header parsing, the key lookup by `kid`,
//! the signature and the claim checks. The ES256 and Ed25519 keys are generated at each run;
//! ring cannot generate RSA keys, so the RSA key is a fixture made for this benchmark only
//! (`fixtures/rsa-2048-bench-only-not-secret.der`, it signs nothing but these tokens).
//!
//! Two figures per kind: the first check of a token (distinct tokens, each checked once:
//! the signature is verified and the result remembered), and a repeated check of one token
//! (answered from the verifier's cache of verified tokens, as a client's next request is).
//! The run checks that the repeated checks verified no signature, or it fails.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::gateway::auth::config::AuthConfig;
use crate::gateway::auth::tokens::TokenVerifier;

/// The RSA key of the RS256 figure (PKCS#1 DER): a benchmark fixture, not a secret.
const RSA_FIXTURE_DER: &[u8] = include_bytes!("fixtures/rsa-2048-bench-only-not-secret.der");
/// Its modulus, base64url.
const RSA_FIXTURE_N: &str = include_str!("fixtures/rsa-2048-bench-only-not-secret.n");

const RESOURCE: &str = "https://gateway.bench/mcp";
const ISSUER: &str = "https://issuer.bench";
const STATIC_TOKEN: &str = "bench-static-token-0123456789abcdef";

/// The per-check time of one kind of token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthFigure {
    pub kind: &'static str,
    pub checks: u64,
    /// Mean time of a token's first check (signature verified), in µs.
    pub first_check_us: f64,
    /// Mean time of a check of a token checked before (from the cache; static tokens have
    /// none, they are compared each time), in µs.
    pub repeat_check_us: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("aop bench auth: {0}")]
pub struct AuthBenchError(String);

fn fail(what: &str) -> impl Fn(String) -> AuthBenchError + '_ {
    move |reason| AuthBenchError(format!("{what}: {reason}"))
}

struct Signer {
    kind: &'static str,
    alg: Algorithm,
    kid: &'static str,
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn generated(
    kind: &'static str,
    alg: Algorithm,
    kid: &'static str,
    rcgen_alg: &'static rcgen::SignatureAlgorithm,
) -> Result<Signer, AuthBenchError> {
    let pair = rcgen::KeyPair::generate_for(rcgen_alg).map_err(|e| fail(kind)(e.to_string()))?;
    let raw = pair.public_key_raw();
    let (key, jwk) = match alg {
        Algorithm::EdDSA => (
            EncodingKey::from_ed_der(&pair.serialize_der()),
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": URL_SAFE_NO_PAD.encode(raw)}),
        ),
        _ => {
            if raw.len() != 65 {
                return Err(fail(kind)(format!(
                    "expected an uncompressed P-256 point, got {} bytes",
                    raw.len()
                )));
            }
            (
                EncodingKey::from_ec_der(&pair.serialize_der()),
                json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
                       "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
            )
        }
    };
    Ok(Signer {
        kind,
        alg,
        kid,
        key,
        jwk,
    })
}

/// Times `checks` verifications of each kind of token.
pub async fn run_auth(checks: u64) -> Result<Vec<AuthFigure>, AuthBenchError> {
    let signers = vec![
        generated(
            "jwt-es256",
            Algorithm::ES256,
            "es",
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )?,
        generated("jwt-eddsa", Algorithm::EdDSA, "ed", &rcgen::PKCS_ED25519)?,
        Signer {
            kind: "jwt-rs256",
            alg: Algorithm::RS256,
            kid: "rs",
            key: EncodingKey::from_rsa_der(RSA_FIXTURE_DER),
            jwk: json!({"kty": "RSA", "alg": "RS256", "kid": "rs", "n": RSA_FIXTURE_N.trim(), "e": "AQAB"}),
        },
    ];
    let dir = std::env::temp_dir().join(format!("aop-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| fail("temporary directory")(e.to_string()))?;
    let jwks = json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()});
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| fail(name)(e.to_string()))
    };
    write("jwks.json", jwks.to_string())?;
    write("static.token", STATIC_TOKEN.to_string())?;
    write(
        "auth.toml",
        format!(
            "[resource]\nurl = \"{RESOURCE}\"\n[jwt]\nissuer = \"{ISSUER}\"\njwks_file = \"jwks.json\"\n\
             algorithms = [\"ES256\", \"EdDSA\", \"RS256\"]\nleeway_s = 60\n\
             [[static_token]]\ntoken_file = \"static.token\"\nsubject = \"bench\"\n"
        ),
    )?;
    let config =
        AuthConfig::load(&dir.join("auth.toml")).map_err(|e| fail("auth file")(e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = config?;
    let verifier = TokenVerifier::new(&config, crate::clock::system())
        .await
        .map_err(|e| fail("verifier")(e.to_string()))?;
    let now = crate::clock::system_unix_ms() / 1000;
    // Distinct tokens (by `jti`) for first checks, made before the clock starts.
    let mut tokens: Vec<(&'static str, Vec<String>)> =
        vec![("static", vec![STATIC_TOKEN.to_string()])];
    for signer in &signers {
        let mut header = Header::new(signer.alg);
        header.kid = Some(signer.kid.to_string());
        let mut distinct = Vec::new();
        for jti in 0..checks.max(1) {
            let claims = json!({"iss": ISSUER, "aud": RESOURCE, "sub": "bench", "exp": now + 3600,
                                "scope": "agents:read agents:call", "jti": jti.to_string()});
            distinct.push(
                jsonwebtoken::encode(&header, &claims, &signer.key)
                    .map_err(|e| fail(signer.kind)(e.to_string()))?,
            );
        }
        tokens.push((signer.kind, distinct));
    }
    let mut figures = Vec::new();
    for (kind, distinct) in &tokens {
        // Every token must pass; a static token has no first check apart from the others.
        let started = Instant::now();
        for token in distinct {
            verifier
                .verify(token)
                .await
                .map_err(|e| fail(kind)(format!("the token does not verify: {e}")))?;
        }
        let first = per_check_us(started.elapsed(), distinct.len() as u64);
        let token = &distinct[0];
        let signatures_before = verifier.signature_checks();
        let started = Instant::now();
        for _ in 0..checks {
            let verified = verifier.verify(token).await;
            std::hint::black_box(&verified);
        }
        let repeat = per_check_us(started.elapsed(), checks);
        let signatures = verifier.signature_checks() - signatures_before;
        if signatures != 0 {
            return Err(fail(kind)(format!(
                "{signatures} of {checks} repeated checks verified the signature again: the \
                 cache of verified tokens did not answer"
            )));
        }
        figures.push(AuthFigure {
            kind,
            checks,
            first_check_us: if *kind == "static" { repeat } else { first },
            repeat_check_us: repeat,
        });
    }
    Ok(figures)
}

fn per_check_us(elapsed: Duration, checks: u64) -> f64 {
    elapsed.as_secs_f64() * 1e6 / checks.max(1) as f64
}
