//! Checking a bearer token: a `[[static_token]]` (compared in constant time with every one),
//! or a JWT access token verified locally against the issuer's keys (`jsonwebtoken`, over
//! `ring`): the header's `alg` must be one of `[jwt] algorithms` and fit the key, the key is
//! found by `kid` (or is the only key of its kind), then the signature, `iss`, `aud` (must
//! contain `[resource] url`), `exp` and `nbf` (both with `leeway_s`) and `sub` are checked.
//!
//! Keys come from `jwks_file` (read at start) or `jwks_url`: fetched at start and again when a
//! token names a `kid` the set lacks (key rotation), at most once per refetch floor, so a
//! stream of tokens with made-up `kid`s cannot make the gateway hammer the issuer. The fetch
//! is one HTTP/1.1 GET (TLS for https, trusting the system roots), bounded in time and size.
//!
//! Tokens are never logged and never part of an error message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::config::{AuthConfig, JwksSource, JwtConfig, StaticToken};
use crate::clock::Clock;

/// The most bytes of a JWKS document fetched from `jwks_url`.
pub const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// How long one JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
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

/// The verification keys of one JWKS document.
pub struct KeySet {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Family,
    decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(Family::Rsa),
        Algorithm::ES256 | Algorithm::ES384 => Some(Family::Ec),
        Algorithm::EdDSA => Some(Family::Ed),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => None,
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Reads a JWKS document; keys of kinds this gateway does not verify with (symmetric,
    /// unknown) are skipped, and a set with no usable key is an error.
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let raw: RawSet = serde_json::from_str(text)
            .map_err(|error| format!("not a JWKS document ({{\"keys\": [...]}}): {error}"))?;
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                AlgorithmParameters::OctetKey(_) => continue,
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|alg| alg.to_string().parse::<Algorithm>().ok());
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                decoding,
            });
        }
        if keys.is_empty() {
            return Err("it holds no RSA, EC or OKP (Ed25519) public key".into());
        }
        Ok(KeySet { keys })
    }

    /// The key for a token of `alg` naming `kid`: by `kid`, or the only key of that kind when
    /// the token names none. `Err(true)` when the `kid` is not in the set (a refetch may help).
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, bool> {
        let family = family_of(alg).ok_or(false)?;
        let fits = |key: &&Key| key.family == family && key.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or(true)
                .and_then(|key| if fits(&key) { Ok(key) } else { Err(false) }),
            None => {
                let mut fitting = self.keys.iter().filter(fits);
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(false),
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

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
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| InvalidToken(format!("malformed JWT header: {error}")))?;
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
                    "the token's key {kid:?} is not among the issuer's keys for {:?}",
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
        other => format!("the token cannot be read: {other:?}"),
    }
}

/// Compares without leaking, through timing, how long a matching prefix was.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// GETs `url` (http or https), bounded by [`JWKS_FETCH_TIMEOUT`] and [`JWKS_MAX_BYTES`].
pub async fn fetch(url: &str) -> Result<String, String> {
    match tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch_unbounded(url)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {} s",
            JWKS_FETCH_TIMEOUT.as_secs()
        )),
    }
}

async fn fetch_unbounded(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| format!("cannot connect to {host}:{port}: {error}"))?;
    let _ = tcp.set_nodelay(true);
    match parsed.scheme() {
        "http" => get(&parsed, tcp).await,
        "https" => {
            let tls = crate::tls::ClientTls::system().map_err(|error| error.to_string())?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|error| format!("{host:?} is not a server name: {error}"))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.config_without_alpn()));
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|error| format!("TLS with {host}: {error}"))?;
            get(&parsed, stream).await
        }
        other => Err(format!("unsupported scheme {other}")),
    }
}

async fn get<IO>(url: &url::Url, io: IO) -> Result<String, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|error| format!("HTTP: {error}"))?;
    let driver = tokio::spawn(connection);
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|error| format!("HTTP: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("HTTP: {error}"))?;
    if !response.status().is_success() {
        driver.abort();
        return Err(format!("answered HTTP {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), JWKS_MAX_BYTES)
        .collect()
        .await
        .map_err(|error| format!("reading the body (at most {JWKS_MAX_BYTES} bytes): {error}"))?
        .to_bytes();
    driver.abort();
    String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
}
