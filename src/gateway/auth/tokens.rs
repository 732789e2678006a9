//! Checking a bearer token: a `[[static_token]]` (compared in constant time with every one),
//! or a JWT access token verified locally against the issuer's keys (`jsonwebtoken`, over
//! `ring`): the header's `alg` must be one of `[jwt] algorithms` and fit the key, the key is
//! found by `kid` (or is the only key of its kind), then the signature, `iss`, `aud` (must
//! contain `[resource] url`), `exp` and `nbf` (both with `leeway_s`) and `sub` are checked.
//!
//! Keys come from `jwks_file` (read at start) or `jwks_url` ([`super::jwks`]): fetched at
//! start and again when a token names a `kid` the set lacks (key rotation), at most once per
//! refetch floor, so a stream of tokens with made-up `kid`s cannot make the gateway hammer
//! the issuer.
//!
//! Tokens are never logged and never part of an error message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::config::{AuthConfig, JwksSource, JwtConfig, StaticToken};
use super::jwks::{KeySet, fetch};
use crate::clock::Clock;
/// The longest token looked at; longer ones are refused before any parsing.
pub const TOKEN_MAX_BYTES: usize = 16 * 1024;

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: String,
    pub scopes: Vec<String>,
}

/// Why a token is refused; the text goes to the client as `error_description`, so it names
/// what failed and never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidToken(pub String);

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// The JWT half of the verifier.
struct JwtVerifier {
    config: JwtConfig,
    keys: ArcSwap<KeySet>,
    /// One validation per allowed algorithm (built once: issuer, audience, leeway).
    validations: HashMap<Algorithm, Validation>,
    clock: Arc<dyn Clock>,
    /// When `jwks_url` was last fetched (successfully or not); one fetch at a time.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

/// Verifies bearer tokens against an auth file's static tokens and JWT settings.
pub struct TokenVerifier {
    statics: Vec<StaticToken>,
    jwt: Option<JwtVerifier>,
}

/// Why `aop gateway --auth` cannot start verifying tokens.
#[derive(Debug, thiserror::Error)]
#[error("{}: [jwt] jwks_url {url}: {reason}", file.display())]
pub struct JwksStartError {
    pub file: std::path::PathBuf,
    pub url: String,
    pub reason: String,
}

impl TokenVerifier {
    /// Builds the verifier; with a `jwks_url`, fetches it once (a failure is an error: a
    /// gateway that can verify no token would refuse every caller).
    pub async fn new(
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<TokenVerifier, JwksStartError> {
        let jwt = match &config.jwt {
            None => None,
            Some(jwt) => {
                let keys = match &jwt.jwks {
                    JwksSource::File { text, path } => {
                        KeySet::parse(text).map_err(|reason| JwksStartError {
                            file: config.file.clone(),
                            url: path.display().to_string(),
                            reason,
                        })?
                    }
                    JwksSource::Url { url, .. } => {
                        let text = fetch(url).await.map_err(|reason| JwksStartError {
                            file: config.file.clone(),
                            url: url.clone(),
                            reason,
                        })?;
                        KeySet::parse(&text).map_err(|reason| JwksStartError {
                            file: config.file.clone(),
                            url: url.clone(),
                            reason,
                        })?
                    }
                };
                let validations = jwt
                    .algorithms
                    .iter()
                    .map(|alg| {
                        let mut validation = Validation::new(*alg);
                        validation.set_issuer(&[&jwt.issuer]);
                        validation.set_audience(&[&config.resource_url]);
                        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                        validation.leeway = jwt.leeway_s;
                        validation.validate_nbf = true;
                        (*alg, validation)
                    })
                    .collect();
                Some(JwtVerifier {
                    config: jwt.clone(),
                    keys: ArcSwap::from_pointee(keys),
                    validations,
                    fetched: tokio::sync::Mutex::new(Some(clock.now())),
                    clock,
                })
            }
        };
        Ok(TokenVerifier {
            statics: config.static_tokens.clone(),
            jwt,
        })
    }

    /// Checks `token`.
    pub async fn verify(&self, token: &str) -> Result<Verified, InvalidToken> {
        if token.len() > TOKEN_MAX_BYTES {
            return Err(InvalidToken(format!(
                "the token is over the limit of {TOKEN_MAX_BYTES} bytes"
            )));
        }
        if let Some(found) = self.check_static(token) {
            return Ok(found);
        }
        match &self.jwt {
            Some(jwt) if token.split('.').count() == 3 => jwt.verify(token).await,
            Some(_) => Err(InvalidToken(
                "the token is neither a JWT nor a static token of this gateway".into(),
            )),
            None => Err(InvalidToken(
                "the token is not a static token of this gateway".into(),
            )),
        }
    }

    /// A static token's caller: every static token is compared, in constant time, so the
    /// answer's timing says nothing about which prefix matched.
    pub fn check_static(&self, token: &str) -> Option<Verified> {
        let mut found = None;
        for candidate in &self.statics {
            if constant_time_eq(candidate.token.as_bytes(), token.as_bytes()) {
                found = Some(Verified {
                    subject: candidate.subject.clone(),
                    scopes: candidate.scopes.clone(),
                });
            }
        }
        found
    }
}

impl JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Verified, InvalidToken> {
        // The parse error itself is not passed on: it may quote the token's contents.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| InvalidToken("the token's JWT header cannot be read".into()))?;
        let Some(validation) = self.validations.get(&header.alg) else {
            return Err(InvalidToken(format!(
                "the token is signed with {:?}, which this gateway does not accept (accepted: {})",
                header.alg,
                self.config
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let kid = header.kid.as_deref();
        let keys = match self.keys.load().find(kid, header.alg) {
            Ok(_) => self.keys.load_full(),
            Err(true) if self.refetch().await => self.keys.load_full(),
            Err(_) => self.keys.load_full(),
        };
        let key = keys.find(kid, header.alg).map_err(|_| {
            InvalidToken(match kid {
                Some(kid) => format!(
                    "the token's key {:?} is not among the issuer's keys for {:?}",
                    kid.chars().take(64).collect::<String>(),
                    header.alg
                ),
                None => format!(
                    "the token names no key (kid) and the issuer has no single {:?} key",
                    header.alg
                ),
            })
        })?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation)
            .map_err(|error| InvalidToken(describe(&error, &self.config.issuer)))?;
        let subject = data
            .claims
            .sub
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| InvalidToken("the token has no sub (subject) claim".into()))?;
        let scopes = data
            .claims
            .scope
            .map(|scope| scope.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Ok(Verified { subject, scopes })
    }

    /// Fetches `jwks_url` again unless it was fetched within the refetch floor; true when
    /// the key set was replaced.
    async fn refetch(&self) -> bool {
        let JwksSource::Url {
            url,
            refetch_floor_s,
        } = &self.config.jwks
        else {
            return false;
        };
        let mut fetched = self.fetched.lock().await;
        let now = self.clock.now();
        if fetched.is_some_and(|at| {
            now.saturating_duration_since(at) < Duration::from_secs(*refetch_floor_s)
        }) {
            return false;
        }
        *fetched = Some(now);
        match fetch(url).await.and_then(|text| KeySet::parse(&text)) {
            Ok(keys) => {
                tracing::info!(%url, keys = keys.len(), "JWKS refetched (a token named an unknown key)");
                self.keys.store(Arc::new(keys));
                true
            }
            Err(reason) => {
                tracing::warn!(%url, %reason, "JWKS refetch failed; keeping the keys held");
                false
            }
        }
    }
}

/// A verification failure in words (no token text).
fn describe(error: &jsonwebtoken::errors::Error, issuer: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => format!("the token's issuer (iss) is not {issuer}"),
        ErrorKind::InvalidAudience => {
            "the token's audience (aud) does not name this resource".into()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key".into(),
        ErrorKind::Json(_) => "the token's claims are not the JSON this gateway reads (sub, iss and scope are strings, aud a string or a list of strings, exp and nbf numbers)".into(),
        // Base64, UTF-8 and the rest: parse errors may quote the token, so none is passed on.
        _ => "the token cannot be read (not base64url-encoded JSON)".into(),
    }
}

/// Compares without leaking, through timing, how long a matching prefix was.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
