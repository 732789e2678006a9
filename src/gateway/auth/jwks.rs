//! An issuer's public keys: a JWKS document read into verification keys, and fetched from
//! `jwks_url` with one HTTP/1.1 GET (TLS for https, trusting the system roots), bounded in
//! time and size. Its own module so the auth file's checks ([`super::config`]) and the
//! token verifier ([`super::tokens`]) both read JWKS the same way.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The most bytes of a JWKS document fetched from `jwks_url`.
pub const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// How long one JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The verification keys of one JWKS document.
pub struct KeySet {
    keys: Vec<Key>,
}

pub(super) struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Family,
    pub(super) decoding: DecodingKey,
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
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, bool> {
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
