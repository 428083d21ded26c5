//! The errors of the domain, mapped once to gRPC statuses at the edge.

use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong; the message says which field and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// An id that the owning service does not know.
    #[error("{0}")]
    NotFound(String),
    /// The request is fine but this replica cannot serve it yet (async mode).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency failed; its status already names it (see `deadline::call`).
    #[error("{}", .0.message())]
    Dependency(Status),
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
}

impl From<sled::Error> for ApiError {
    fn from(err: sled::Error) -> Self {
        ApiError::Storage(StoreError::Sled(err))
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::Dependency(status)
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Dependency(status) => status,
            ApiError::Storage(e @ StoreError::Poisoned) => Status::unavailable(e.to_string()),
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                Status::internal(format!("storage failure: {e}"))
            }
        }
    }
}

/// Turns an id check into an `InvalidArgument`.
pub fn check_id(field: &str, prefix: &str, value: &str) -> Result<(), ApiError> {
    crate::ids::check_id(field, prefix, value).map_err(ApiError::InvalidArgument)
}
