//! The one mapping from this door's errors to gRPC status codes (CONTRACT section 7).

use tonic::{Code, Status};

use crate::catalog::CatalogError;
use crate::grpc::convert::RequestError;

/// Everything a `Registry` call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        let code = match &error {
            ServiceError::Request(_) => Code::InvalidArgument,
            ServiceError::Catalog(CatalogError::NotAuthoritative { .. })
            | ServiceError::Catalog(CatalogError::NoSuchZone { .. }) => Code::NotFound,
        };
        Status::new(code, error.to_string())
    }
}
