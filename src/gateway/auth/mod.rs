//! The gateway as an OAuth 2.1 resource server (docs/protocol.md §8.2, MCP authorization):
//! `aop gateway --auth FILE`.
//!
//! - [`config`]: the auth file, checked whole at start (unknown keys, unreadable key and
//!   token files and bad patterns fail the command, naming the file and key).
//! - [`tokens`]: who a bearer token is (static development tokens, JWTs verified locally
//!   against the issuer's keys, [`jwks`], refetched on key rotation).
//! - [`policy`]: what a caller may see and call (first `[[policy]]` matching its subject).
//! - [`bucket`]: the per-caller and per-agent token buckets of `[rate_limit]`.
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
        }))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The caller a bearer token stands for.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Caller>, InvalidToken> {
        let verified = self.verifier.verify(token).await?;
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
