//! The gateway as an OAuth 2.1 resource server (docs/protocol.md §8.2, MCP authorization):
//! `aop gateway --auth FILE`.
//!
//! - [`config`]: the auth file, checked whole at start (unknown keys, unreadable key and
//!   token files and bad patterns fail the command, naming the file and key).
//! - [`tokens`]: who a bearer token is (static development tokens, JWTs verified locally
//!   against the issuer's keys, [`jwks`], refetched on key rotation).
//! - [`policy`]: what a caller may see and call (first `[[policy]]` matching its subject).
//! - [`bucket`]: the per-caller and per-agent token buckets of `[rate_limit]`, and the
//!   bound on failed token checks per client address ([`FAILED_CHECKS_PER_ADDRESS`]).
//! - [`http`]: the HTTP side: the RFC 9728 metadata documents, 401 before anything reads the
//!   request, 403 and 429 for a tool call decided from its JSON-RPC body before rmcp sees it.
//!
//! What a caller may see is enforced where answers are built (tools/list, the discovery and
//! task tools), through the [`Caller`] the HTTP layer leaves in the request's extensions,
//! which rmcp hands to the handler. The caller's token never leaves the gateway: agents get
//! the `[[upstream_credential]]` of their URL, or nothing.

pub mod bucket;
pub mod config;
pub mod http;
pub mod jwks;
pub mod policy;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::name::Name;
use bucket::Buckets;
use config::AuthConfig;
use policy::Policy;
use tokens::{InvalidToken, JwksStartError, TokenVerifier};

pub use tokens::Verified;

/// An authenticated caller: its subject and the policy that applies to it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub scopes: Vec<String>,
    pub policy: Arc<Policy>,
}

impl Caller {
    pub fn sees(&self, name: &Name) -> bool {
        self.policy.sees(name)
    }

    pub fn may_call(&self, name: &Name) -> bool {
        self.policy.may_call(name)
    }
}

/// What `--auth` decides for the gateway: built once at start from the checked file.
pub struct Authorizer {
    config: AuthConfig,
    verifier: TokenVerifier,
    policies: Vec<Arc<Policy>>,
    per_caller: Option<Buckets>,
    per_agent: Option<Buckets>,
    /// Tokens that failed their check, per client address ([`FAILED_CHECKS_PER_ADDRESS`]).
    failures: Buckets,
}

/// Failed token checks one client address may cause: a burst of 20, then one a second.
/// Past it the address's tokens that need a signature check get 429 without one (tokens
/// verified before, and static tokens, still pass): invalid tokens cost a signature check
/// each, and must not be a free way to burn the gateway's CPU.
pub const FAILED_CHECKS_PER_ADDRESS: config::BucketLimit = config::BucketLimit {
    requests: 20,
    per_s: 20,
};

/// Why a request's token gets no caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Invalid(#[from] InvalidToken),
    /// The client address is past [`FAILED_CHECKS_PER_ADDRESS`]; retry after `wait`.
    #[error(
        "Too many requests: {address} sent more than {} invalid tokens at {} per second; \
         its tokens are not checked until the limit refills",
        FAILED_CHECKS_PER_ADDRESS.requests,
        FAILED_CHECKS_PER_ADDRESS.requests / FAILED_CHECKS_PER_ADDRESS.per_s
    )]
    TooManyFailures {
        address: std::net::IpAddr,
        wait: Duration,
    },
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("file", &self.config.file)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Builds the authorizer (fetching `jwks_url` once).
    pub async fn new(
        config: AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Authorizer>, JwksStartError> {
        let verifier = TokenVerifier::new(&config, Arc::clone(&clock)).await?;
        let policies = config.policies.iter().cloned().map(Arc::new).collect();
        let per_caller = config
            .per_caller
            .map(|limit| Buckets::new(limit, Arc::clone(&clock)));
        let per_agent = config
            .per_agent
            .map(|limit| Buckets::new(limit, Arc::clone(&clock)));
        Ok(Arc::new(Authorizer {
            config,
            verifier,
            policies,
            per_caller,
            per_agent,
            failures: Buckets::new(FAILED_CHECKS_PER_ADDRESS, clock),
        }))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The caller a bearer token stands for, sent from `address` (when known): a token
    /// that needs a signature check is checked only while the address is within
    /// [`FAILED_CHECKS_PER_ADDRESS`], and a failed check counts against it.
    pub async fn authenticate(
        &self,
        token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Arc<Caller>, AuthError> {
        let verified = match self.verifier.remembered(token) {
            Some(answer) => answer?,
            None => {
                let key = address.map(|address| address.to_string());
                if let (Some(address), Some(key)) = (address, &key)
                    && let Err(wait) = self.failures.check(key)
                {
                    return Err(AuthError::TooManyFailures { address, wait });
                }
                let checked = self.verifier.verify(token).await;
                if let (Err(_), Some(key)) = (&checked, &key) {
                    let _ = self.failures.take(key);
                }
                checked?
            }
        };
        let policy = self
            .policies
            .iter()
            .find(|policy| policy.subject == "*" || policy.subject == verified.subject)
            .cloned()
            .unwrap_or_else(|| Arc::new(Policy::nothing(&verified.subject)));
        Ok(Arc::new(Caller {
            subject: verified.subject,
            scopes: verified.scopes,
            policy,
        }))
    }

    /// One request of `subject`, or how long to wait.
    pub fn take_caller(&self, subject: &str) -> Result<(), Duration> {
        self.per_caller
            .as_ref()
            .map_or(Ok(()), |buckets| buckets.take(subject))
    }

    /// One call of `agent`, or how long to wait.
    pub fn take_agent(&self, agent: &Name) -> Result<(), Duration> {
        self.per_agent
            .as_ref()
            .map_or(Ok(()), |buckets| buckets.take(agent.as_str()))
    }
}
