//! The `--auth` file (docs/protocol.md §8.2): TOML read with serde, unknown keys refused, and
//! every error naming the file, the place (`LINE:COL`) and what was wrong. Files it names
//! (`jwks_file`, `token_file`, `bearer_file`) are relative to the auth file's directory and
//! read here, so a missing key or token fails `aop gateway` at start, not the first caller.
//!
//! The gateway may not import the zone reader (ARCHITECTURE.md, "Boundaries"), so the
//! `FILE:LINE:COL: message` form zone files and node configs use is produced here the same way.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::policy::{Pattern, Policy};

/// Why an auth file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct AuthConfigError {
    pub file: PathBuf,
    /// `LINE:COL: ...` for a place in the file, else the key and what was wrong.
    pub message: String,
}

/// The most bytes of any file the auth file names (keys, tokens): they are small, and a
/// mistaken path to a large file must not be read whole.
pub const AUTH_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// The shortest wait between two fetches of `jwks_url` when tokens name unknown keys.
pub const JWKS_REFETCH_FLOOR_DEFAULT_S: u64 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    resource: RawResource,
    jwt: Option<RawJwt>,
    #[serde(default)]
    static_token: Vec<RawStaticToken>,
    #[serde(default)]
    policy: Vec<RawPolicy>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    upstream_credential: Vec<RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    url: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    algorithms: Vec<String>,
    #[serde(default)]
    leeway_s: u64,
    jwks_refetch_floor_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticToken {
    token_file: String,
    subject: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    subject: String,
    #[serde(default)]
    see: Vec<String>,
    #[serde(default)]
    call: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_caller: Option<RawBucket>,
    per_agent: Option<RawBucket>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    requests: u32,
    per_s: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url_prefix: String,
    bearer_file: String,
}

/// Where access tokens' keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS document read once at start (its text).
    File { path: PathBuf, text: String },
    /// Fetched at start and again when a token names a key it does not hold (at most once
    /// per `refetch_floor_s`).
    Url { url: String, refetch_floor_s: u64 },
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub jwks: JwksSource,
    pub algorithms: Vec<Algorithm>,
    pub leeway_s: u64,
}

/// A development token: its text (never logged) and who it is.
#[derive(Clone)]
pub struct StaticToken {
    pub token: String,
    pub subject: String,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &"<redacted>")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A token bucket: `requests` at most in a burst, refilled at `requests` every `per_s`
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLimit {
    pub requests: u32,
    pub per_s: u32,
}

/// What the gateway sends to agents whose URL starts with `url_prefix`.
#[derive(Clone)]
pub struct UpstreamCredential {
    pub url_prefix: String,
    pub bearer: String,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("url_prefix", &self.url_prefix)
            .field("bearer", &"<redacted>")
            .finish()
    }
}

/// A checked auth file.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub file: PathBuf,
    pub resource_url: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub jwt: Option<JwtConfig>,
    pub static_tokens: Vec<StaticToken>,
    pub policies: Vec<Policy>,
    pub per_caller: Option<BucketLimit>,
    pub per_agent: Option<BucketLimit>,
    pub upstream: Vec<UpstreamCredential>,
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

impl AuthConfig {
    /// Reads and checks `path` and every file it names.
    pub fn load(path: &Path) -> Result<AuthConfig, AuthConfigError> {
        let text = read_small(path).map_err(|message| AuthConfigError {
            file: path.to_path_buf(),
            message,
        })?;
        AuthConfig::parse(path, &text)
    }

    /// Checks `text`, the contents of `path` (files it names are read relative to `path`).
    pub fn parse(path: &Path, text: &str) -> Result<AuthConfig, AuthConfigError> {
        let fail = |message: String| AuthConfigError {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let (line, column) = line_column(text, offset);
            fail(format!("{line}:{column}: {}", error.message().trim()))
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let relative = |name: &str| -> PathBuf {
            let p = Path::new(name);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let resource_url = raw.resource.url.trim().to_string();
        check_url(&resource_url).map_err(|why| fail(format!("[resource] url: {why}")))?;
        for server in &raw.resource.authorization_servers {
            check_url(server).map_err(|why| {
                fail(format!(
                    "[resource] authorization_servers {server:?}: {why}"
                ))
            })?;
        }
        let jwt = match raw.jwt {
            None => None,
            Some(jwt) => {
                if jwt.issuer.trim().is_empty() {
                    return Err(fail("[jwt] issuer: must not be empty".into()));
                }
                if jwt.algorithms.is_empty() {
                    return Err(fail(
                        "[jwt] algorithms: name at least one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA".into(),
                    ));
                }
                let mut algorithms = Vec::new();
                for name in &jwt.algorithms {
                    let algorithm: Algorithm = name.parse().ok().filter(|a| {
                        !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
                    }).ok_or_else(|| fail(format!(
                        "[jwt] algorithms: {name:?} is not an asymmetric JWS algorithm this gateway verifies (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                    )))?;
                    algorithms.push(algorithm);
                }
                let jwks = match (jwt.jwks_file, jwt.jwks_url) {
                    (Some(file), None) => {
                        let file = relative(&file);
                        let text = read_small(&file)
                            .map_err(|why| fail(format!("[jwt] jwks_file: {why}")))?;
                        super::jwks::KeySet::parse(&text).map_err(|why| {
                            fail(format!("[jwt] jwks_file {}: {why}", file.display()))
                        })?;
                        JwksSource::File { path: file, text }
                    }
                    (None, Some(url)) => {
                        check_url(&url).map_err(|why| fail(format!("[jwt] jwks_url: {why}")))?;
                        JwksSource::Url {
                            url,
                            refetch_floor_s: jwt
                                .jwks_refetch_floor_s
                                .unwrap_or(JWKS_REFETCH_FLOOR_DEFAULT_S),
                        }
                    }
                    (Some(_), Some(_)) => {
                        return Err(fail("[jwt]: give jwks_file or jwks_url, not both".into()));
                    }
                    (None, None) => {
                        return Err(fail(
                            "[jwt]: missing jwks_file or jwks_url (where the issuer's public keys are)".into(),
                        ));
                    }
                };
                if jwt.jwks_refetch_floor_s.is_some() && matches!(jwks, JwksSource::File { .. }) {
                    return Err(fail(
                        "[jwt] jwks_refetch_floor_s: applies to jwks_url only".into(),
                    ));
                }
                if jwt.leeway_s > 3600 {
                    return Err(fail(format!(
                        "[jwt] leeway_s: {} is over the limit of 3600 seconds",
                        jwt.leeway_s
                    )));
                }
                Some(JwtConfig {
                    issuer: jwt.issuer,
                    jwks,
                    algorithms,
                    leeway_s: jwt.leeway_s,
                })
            }
        };
        let mut static_tokens = Vec::new();
        for (i, token) in raw.static_token.iter().enumerate() {
            let at = format!("[[static_token]] #{}", i + 1);
            if token.subject.trim().is_empty() {
                return Err(fail(format!("{at} subject: must not be empty")));
            }
            let file = relative(&token.token_file);
            let text = read_small(&file).map_err(|why| fail(format!("{at} token_file: {why}")))?;
            let text = text.trim().to_string();
            if text.len() < 16 {
                return Err(fail(format!(
                    "{at} token_file {}: a token must be at least 16 characters, it has {}",
                    file.display(),
                    text.len()
                )));
            }
            if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(fail(format!(
                    "{at} token_file {}: a token is one line without spaces",
                    file.display()
                )));
            }
            if static_tokens
                .iter()
                .any(|other: &StaticToken| other.token == text)
            {
                return Err(fail(format!(
                    "{at} token_file {}: the same token as an earlier [[static_token]]",
                    file.display()
                )));
            }
            static_tokens.push(StaticToken {
                token: text,
                subject: token.subject.clone(),
                scopes: token.scopes.clone(),
            });
        }
        if jwt.is_none() && static_tokens.is_empty() {
            return Err(fail(
                "no way to accept a caller: add a [jwt] section or a [[static_token]]".into(),
            ));
        }
        let mut policies = Vec::new();
        for (i, policy) in raw.policy.iter().enumerate() {
            let at = format!("[[policy]] #{} (subject {:?})", i + 1, policy.subject);
            if policy.subject.is_empty() {
                return Err(fail(format!(
                    "[[policy]] #{} subject: must not be empty (\"*\" matches any caller)",
                    i + 1
                )));
            }
            let patterns = |key: &str, items: &[String]| -> Result<Vec<Pattern>, AuthConfigError> {
                items
                    .iter()
                    .map(|item| {
                        Pattern::parse(item)
                            .map_err(|why| fail(format!("{at} {key} {item:?}: {why}")))
                    })
                    .collect()
            };
            policies.push(Policy {
                subject: policy.subject.clone(),
                see: patterns("see", &policy.see)?,
                call: patterns("call", &policy.call)?,
            });
        }
        let bucket = |key: &str,
                      raw: Option<RawBucket>|
         -> Result<Option<BucketLimit>, AuthConfigError> {
            let Some(raw) = raw else { return Ok(None) };
            if raw.requests == 0 || raw.per_s == 0 {
                return Err(fail(format!(
                    "[rate_limit] {key}: requests and per_s must be at least 1 (got requests = {}, per_s = {})",
                    raw.requests, raw.per_s
                )));
            }
            Ok(Some(BucketLimit {
                requests: raw.requests,
                per_s: raw.per_s,
            }))
        };
        let (per_caller, per_agent) = match raw.rate_limit {
            Some(limits) => (
                bucket("per_caller", limits.per_caller)?,
                bucket("per_agent", limits.per_agent)?,
            ),
            None => (None, None),
        };
        let mut upstream = Vec::new();
        for (i, credential) in raw.upstream_credential.iter().enumerate() {
            let at = format!("[[upstream_credential]] #{}", i + 1);
            check_url(&credential.url_prefix)
                .map_err(|why| fail(format!("{at} url_prefix: {why}")))?;
            let file = relative(&credential.bearer_file);
            let text = read_small(&file).map_err(|why| fail(format!("{at} bearer_file: {why}")))?;
            let bearer = text.trim().to_string();
            if bearer.is_empty() || bearer.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(fail(format!(
                    "{at} bearer_file {}: must hold one token on one line",
                    file.display()
                )));
            }
            upstream.push(UpstreamCredential {
                url_prefix: credential.url_prefix.clone(),
                bearer,
            });
        }
        Ok(AuthConfig {
            file: path.to_path_buf(),
            resource_url,
            authorization_servers: raw.resource.authorization_servers,
            scopes_supported: raw.resource.scopes_supported,
            jwt,
            static_tokens,
            policies,
            per_caller,
            per_agent,
            upstream,
        })
    }

    /// The policy of `subject`: the first whose subject is it or `*`; none (sees and calls
    /// nothing) when no policy matches.
    pub fn policy_of(&self, subject: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|policy| policy.subject == "*" || policy.subject == subject)
    }
}

fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    Ok(())
}

/// A file's text, at most [`AUTH_FILE_MAX_BYTES`].
fn read_small(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if meta.len() > AUTH_FILE_MAX_BYTES {
        return Err(format!(
            "{} is {} bytes, over the limit of {AUTH_FILE_MAX_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}
