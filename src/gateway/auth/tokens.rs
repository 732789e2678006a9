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
//! A JWT that verified is remembered ([`VerifiedTokens`]) so the same token on the next
//! request costs a SHA-256 and a lookup instead of a signature check (ES256 and EdDSA take
//! more than the 50 µs budget per request): keyed by the token's SHA-256 (the token itself
//! is never stored), holding what the token said, valid until its `exp` (plus leeway) or
//! [`CACHE_HOLD`] after it was verified, whichever is first, judged on the gateway's clock
//! on every hit; bounded to [`CACHE_CAPACITY`] tokens; and forgotten as a whole when the key
//! set changes (a rotated-out key must stop working at once). Failures are never cached.
//!
//! Tokens are never logged and never part of an error message.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::{AuthConfig, JwksSource, JwtConfig, StaticToken};
use super::jwks::{KeySet, fetch};
use crate::clock::Clock;
/// The longest token looked at; longer ones are refused before any parsing.
pub const TOKEN_MAX_BYTES: usize = 16 * 1024;
/// Verified tokens remembered at most; past it the least used are dropped (a token
/// dropped is verified again, nothing else).
pub const CACHE_CAPACITY: u64 = 10_000;
/// The longest a verified token is trusted without a new signature check, whatever its
/// `exp` says.
pub const CACHE_HOLD: Duration = Duration::from_secs(300);

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
    /// Required by the validation; read again to bound how long the token is remembered.
    #[serde(default)]
    exp: Option<f64>,
}

/// Verified JWTs by the SHA-256 of their bytes.
struct VerifiedTokens {
    entries: moka::sync::Cache<[u8; 32], Arc<CachedToken>>,
    /// Bumped whenever the key set changes: an entry verified under another generation is
    /// not used (entries are also dropped then; this covers a verification that was under
    /// way while the keys changed).
    generation: AtomicU64,
}

struct CachedToken {
    verified: Verified,
    /// `exp` (seconds since the epoch) plus the leeway, in milliseconds: past it the token is
    /// expired, as the signature check would say.
    expires_ms: u64,
    /// When the token must be verified again ([`CACHE_HOLD`] after it was).
    recheck_ms: u64,
    generation: u64,
}

impl VerifiedTokens {
    fn new() -> VerifiedTokens {
        VerifiedTokens {
            entries: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                // moka's own clock; the entry's times on the gateway's clock decide first.
                .time_to_live(CACHE_HOLD)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// What a remembered token says, if it may be used at `now_ms`; an expired one is an
    /// error, as the signature check would answer.
    fn get(&self, key: &[u8; 32], now_ms: u64) -> Option<Result<Verified, InvalidToken>> {
        let entry = self.entries.get(key)?;
        if entry.generation != self.generation.load(Ordering::Acquire) {
            self.entries.invalidate(key);
            return None;
        }
        if now_ms > entry.expires_ms {
            self.entries.invalidate(key);
            return Some(Err(InvalidToken("the token has expired".into())));
        }
        if now_ms >= entry.recheck_ms {
            self.entries.invalidate(key);
            return None;
        }
        Some(Ok(entry.verified.clone()))
    }

    fn insert(&self, key: [u8; 32], entry: CachedToken) {
        self.entries.insert(key, Arc::new(entry));
    }

    /// The keys changed: nothing verified before is used again.
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }
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
    cache: VerifiedTokens,
    /// Signature checks done (cache misses that got as far as a key), for tests and `aop
    /// bench auth`.
    signature_checks: AtomicU64,
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
                    cache: VerifiedTokens::new(),
                    signature_checks: AtomicU64::new(0),
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
        if let Some(answer) = self.remembered(token) {
            return answer;
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

    /// What can be said of `token` without a signature check: too long, a static token, or
    /// a JWT verified before (or expired since); `None` when only [`TokenVerifier::verify`]
    /// can tell.
    pub fn remembered(&self, token: &str) -> Option<Result<Verified, InvalidToken>> {
        if token.len() > TOKEN_MAX_BYTES {
            return Some(Err(InvalidToken(format!(
                "the token is over the limit of {TOKEN_MAX_BYTES} bytes"
            ))));
        }
        if let Some(found) = self.check_static(token) {
            return Some(Ok(found));
        }
        let jwt = self.jwt.as_ref()?;
        jwt.cache
            .get(&VerifiedTokens::key(token), jwt.clock.unix_ms())
    }

    /// JWT signature checks done since start: a token answered from the cache adds none.
    pub fn signature_checks(&self) -> u64 {
        self.jwt
            .as_ref()
            .map_or(0, |jwt| jwt.signature_checks.load(Ordering::Relaxed))
    }

    /// Replaces the issuer's keys (what a refetch does); tokens verified before are
    /// forgotten.
    pub fn replace_keys(&self, keys: KeySet) {
        if let Some(jwt) = &self.jwt {
            jwt.replace_keys(keys);
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
        let key = VerifiedTokens::key(token);
        let generation = self.cache.generation.load(Ordering::Acquire);
        if let Some(known) = self.cache.get(&key, self.clock.unix_ms()) {
            return known;
        }
        let (verified, exp) = self.verify_signed(token).await?;
        // Remembered until exp (with leeway) or CACHE_HOLD from now, on the gateway's clock;
        // an exp the signature check let through but this clock says is past: not at all.
        let now_ms = self.clock.unix_ms();
        let expires_ms = exp
            .map(|exp| (exp.max(0.0) as u64).saturating_add(self.config.leeway_s))
            .map(|s| s.saturating_mul(1000));
        if let Some(expires_ms) = expires_ms
            && expires_ms > now_ms
        {
            self.cache.insert(
                key,
                CachedToken {
                    verified: verified.clone(),
                    expires_ms,
                    recheck_ms: now_ms.saturating_add(CACHE_HOLD.as_millis() as u64),
                    generation,
                },
            );
        }
        Ok(verified)
    }

    fn replace_keys(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
        self.cache.clear();
    }

    /// The signature and claim checks of a token not remembered: who it is, and its `exp`.
    async fn verify_signed(&self, token: &str) -> Result<(Verified, Option<f64>), InvalidToken> {
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
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
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
        Ok((Verified { subject, scopes }, data.claims.exp))
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
                self.replace_keys(keys);
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

#[cfg(test)]
mod tests;
