//! The cache of verified tokens, on a manual clock: a repeated token verifies no signature,
//! a remembered token still expires, it is checked again after the hold, and new keys make
//! every remembered token be verified again (or refused, when its key is gone).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{CACHE_HOLD, TokenVerifier};
use crate::clock::{Clock, ManualClock};
use crate::gateway::auth::config::AuthConfig;
use crate::gateway::auth::jwks::KeySet;

const RESOURCE: &str = "https://gateway.test/mcp";
const ISSUER: &str = "https://issuer.test";
const LEEWAY_S: u64 = 5;

/// An ES256 key and its JWKS document.
struct Signer {
    kid: &'static str,
    key: EncodingKey,
    jwks: String,
}

impl Signer {
    fn generate(kid: &'static str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])});
        Signer {
            kid,
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    }

    /// A token for `sub` expiring `lifetime_s` from now (the real clock: the signature
    /// check reads it).
    fn token(&self, sub: &str, lifetime_s: u64) -> String {
        let now = crate::clock::system_unix_ms() / 1000;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_string());
        let claims = json!({"iss": ISSUER, "aud": RESOURCE, "sub": sub, "exp": now + lifetime_s,
                            "scope": "agents:read"});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn verifier(dir: &Path, signer: &Signer, clock: Arc<ManualClock>) -> TokenVerifier {
    std::fs::write(dir.join("jwks.json"), &signer.jwks).unwrap();
    let text = format!(
        "[resource]\nurl = \"{RESOURCE}\"\n[jwt]\nissuer = \"{ISSUER}\"\njwks_file = \"jwks.json\"\n\
         algorithms = [\"ES256\"]\nleeway_s = {LEEWAY_S}\n"
    );
    let path = dir.join("auth.toml");
    std::fs::write(&path, &text).unwrap();
    let config = AuthConfig::load(&path).unwrap();
    TokenVerifier::new(&config, clock as Arc<dyn Clock>)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repeated_token_verifies_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate("k1");
    let verifier = verifier(dir.path(), &signer, ManualClock::new()).await;
    let token = signer.token("bob", 3600);
    let first = verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 1);
    for _ in 0..5 {
        assert_eq!(verifier.verify(&token).await.unwrap(), first);
    }
    assert_eq!(verifier.signature_checks(), 1, "answered from the cache");
    assert_eq!(first.subject, "bob");
    assert_eq!(first.scopes, ["agents:read"]);
    // Another token of the same caller is another key of the cache.
    verifier.verify(&signer.token("bob", 3599)).await.unwrap();
    assert_eq!(verifier.signature_checks(), 2);
    // A tampered token is never answered from the cache: its hash differs.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(verifier.verify(&tampered).await.is_err());
}

#[tokio::test]
async fn a_remembered_token_still_expires_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate("k1");
    let clock = ManualClock::new();
    let verifier = verifier(dir.path(), &signer, Arc::clone(&clock)).await;
    let token = signer.token("bob", 60);
    verifier.verify(&token).await.unwrap();
    // Within exp plus the leeway: still the caller, from the cache.
    clock.advance(Duration::from_secs(60 + LEEWAY_S - 2));
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 1);
    // Past it: expired, though no signature was checked again.
    clock.advance(Duration::from_secs(4));
    let error = verifier.verify(&token).await.unwrap_err();
    assert_eq!(error.0, "the token has expired");
    assert_eq!(verifier.signature_checks(), 1);
}

#[tokio::test]
async fn a_remembered_token_is_verified_again_after_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate("k1");
    let clock = ManualClock::new();
    let verifier = verifier(dir.path(), &signer, Arc::clone(&clock)).await;
    let token = signer.token("bob", 3600);
    verifier.verify(&token).await.unwrap();
    clock.advance(CACHE_HOLD - Duration::from_secs(1));
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 1);
    clock.advance(Duration::from_secs(1));
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier.signature_checks(),
        2,
        "checked again after the hold"
    );
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 2, "and remembered anew");
}

#[tokio::test]
async fn new_keys_forget_every_remembered_token() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate("k1");
    let verifier = verifier(dir.path(), &signer, ManualClock::new()).await;
    let token = signer.token("bob", 3600);
    verifier.verify(&token).await.unwrap();
    // The same keys fetched again: the token is verified again, then remembered again.
    verifier.replace_keys(KeySet::parse(&signer.jwks).unwrap());
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 2);
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.signature_checks(), 2);
    // Rotation: the token's key is gone, and so is the token.
    let rotated = Signer::generate("k2");
    verifier.replace_keys(KeySet::parse(&rotated.jwks).unwrap());
    let error = verifier.verify(&token).await.unwrap_err();
    assert!(
        error.0.contains("is not among the issuer's keys"),
        "{error}"
    );
    verifier.verify(&rotated.token("bob", 3600)).await.unwrap();
}
