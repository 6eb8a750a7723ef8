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
    /// The caller lacks the scope of a command of a `Batch`.
    #[error("{0}")]
    PermissionDenied(String),
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
            ClusterError::Connect(e) => Self::Unavailable(e.to_string()),
            deadline @ ClusterError::Deadline(_) => Self::Unavailable(deadline.to_string()),
        }
    }
}

/// Longest status message. Messages may quote what the caller sent (a socket id, a room)
/// and travel in an HTTP/2 header (`grpc-message`): a quoted 70 KB value would exceed the
/// client's header limit and reach it as a protocol error instead of this status.
const MAX_MESSAGE_BYTES: usize = 1024;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let rest = message.len() - end;
        message.truncate(end);
        message.push_str(&format!("… ({rest} more bytes)"));
    }
    message
}

impl From<ControlError> for Status {
    fn from(error: ControlError) -> Self {
        let message = bounded(error.to_string());
        match error {
            ControlError::InvalidArgument(_) => Status::invalid_argument(message),
            ControlError::NotFound(_) => Status::not_found(message),
            ControlError::Unavailable(_) => Status::unavailable(message),
            ControlError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ControlError::Exhausted(_) => Status::resource_exhausted(message),
            ControlError::FailedPrecondition(_) => Status::failed_precondition(message),
            ControlError::PermissionDenied(_) => Status::permission_denied(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let status = Status::from(ControlError::invalid(format!("id {}", "é".repeat(5000))));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < MAX_MESSAGE_BYTES + 32);
        assert!(
            status.message().ends_with("… (8980 more bytes)"),
            "{}",
            status.message()
        );
        let short = Status::from(ControlError::NotFound("no connected socket".into()));
        assert_eq!(short.message(), "no connected socket");
    }
}
