//! Control-plane failures, converted to gRPC statuses in one place.

use socketioxide::BroadcastError;
use tonic::Status;

use crate::cluster::ClusterError;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A socket that is connected nowhere.
    #[error("{0}")]
    NotFound(String),
    /// The cluster adapter failed.
    #[error("cluster adapter: {0}")]
    Unavailable(String),
    /// Other nodes did not answer in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A limit of this node is reached.
    #[error("{0}")]
    Exhausted(String),
    /// The target is not in a state that allows the call (a socket not authenticated).
    #[error("{0}")]
    FailedPrecondition(String),
}

impl ControlError {
    /// An `INVALID_ARGUMENT` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// An adapter failure.
    pub fn adapter(error: impl std::fmt::Display) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<BroadcastError> for ControlError {
    fn from(error: BroadcastError) -> Self {
        match error {
            BroadcastError::Serialize(e) => {
                Self::InvalidArgument(format!("cannot encode data: {e}"))
            }
            other => Self::adapter(other),
        }
    }
}

impl From<ClusterError> for ControlError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::Unavailable(e) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<ControlError> for Status {
    fn from(error: ControlError) -> Self {
        let message = error.to_string();
        match error {
            ControlError::InvalidArgument(_) => Status::invalid_argument(message),
            ControlError::NotFound(_) => Status::not_found(message),
            ControlError::Unavailable(_) => Status::unavailable(message),
            ControlError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ControlError::Exhausted(_) => Status::resource_exhausted(message),
            ControlError::FailedPrecondition(_) => Status::failed_precondition(message),
        }
    }
}
