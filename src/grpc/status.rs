//! The one mapping from this door's errors to gRPC status codes (docs/protocol.md §7).

use tonic::{Code, Status};

use crate::authority::UpdateError;
use crate::catalog::CatalogError;
use crate::grpc::convert::RequestError;
use crate::resolver::ResolveError;
use crate::search::federate::SearchError;

/// Everything a `Registry` call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A request forwarded to a zone's own server failed there.
    #[error("{message} (answered by {server}, a server of zone {zone})")]
    Authority {
        zone: crate::name::Name,
        server: String,
        code: Code,
        message: String,
    },
    /// A bound on what clients may hold open is reached.
    #[error("too many {what} open: {reason}")]
    Overloaded { what: &'static str, reason: String },
    /// A zone this node is configured for has no data yet (a secondary before its first
    /// transfer) or no longer (withdrawn after `expire`): a sibling server may have it.
    #[error(
        "zone {zone} is configured on this node but not loaded (a secondary before its first transfer, or after expire); ask another of its servers"
    )]
    NotLoaded { zone: crate::name::Name },
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        let code = match &error {
            ServiceError::Request(_) => Code::InvalidArgument,
            ServiceError::Catalog(CatalogError::NotAuthoritative { .. })
            | ServiceError::Catalog(CatalogError::NoSuchZone { .. }) => Code::NotFound,
            ServiceError::Resolve(error) => resolve_code(error),
            ServiceError::Update(error) => match error {
                UpdateError::NotServed { .. }
                | UpdateError::NoSuchAgent { .. }
                | UpdateError::NoSuchEndpoint { .. } => Code::NotFound,
                UpdateError::Secondary { .. }
                | UpdateError::FromFile { .. }
                | UpdateError::Reload { .. } => Code::FailedPrecondition,
                UpdateError::OutsideZone { .. }
                | UpdateError::Occluded { .. }
                | UpdateError::NameTaken { .. }
                | UpdateError::TooManyEndpoints { .. } => Code::InvalidArgument,
                UpdateError::Auth(auth) if auth.is_permission_denied() => Code::PermissionDenied,
                UpdateError::Auth(_) => Code::Unauthenticated,
                UpdateError::Transfer { .. }
                | UpdateError::PrimaryBehind { .. }
                | UpdateError::Store(_)
                | UpdateError::Stopped => Code::Unavailable,
            },
            ServiceError::Search(error) => match error {
                SearchError::Catalog(_) => Code::NotFound,
                SearchError::Resolve(error) => resolve_code(error),
                SearchError::Unavailable { .. } => Code::Unavailable,
            },
            ServiceError::Authority { code, .. } => *code,
            ServiceError::NotLoaded { .. } => Code::Unavailable,
            ServiceError::Overloaded { .. } => Code::ResourceExhausted,
        };
        Status::new(code, error.to_string())
    }
}

fn resolve_code(error: &ResolveError) -> Code {
    match error {
        ResolveError::Unavailable { .. } => Code::Unavailable,
        ResolveError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        // Configuration and data problems of the tree (SERVFAIL-like): retrying the same
        // query will not help until someone fixes the zones or the node.
        ResolveError::NoRoots { .. }
        | ResolveError::TooManyReferrals { .. }
        | ResolveError::TooManyQueries { .. }
        | ResolveError::AliasLoop { .. }
        | ResolveError::AliasChainTooLong { .. } => Code::FailedPrecondition,
        ResolveError::NotAZone { .. } | ResolveError::NoSuchZone { .. } => Code::NotFound,
    }
}
