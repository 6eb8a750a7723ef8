//! Errors of the control client: every failure keeps what caused it, and a gRPC failure
//! keeps its [`tonic::Status`] (code, message, metadata).

use std::{error::Error as _, path::PathBuf};

use tonic::{Code, Status};

/// A failed control-plane operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A file (CA, certificate, key, token) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS options do not fit together.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The gateway could not be reached (refused, unreachable, TLS handshake failed).
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },
    /// The call failed with a gRPC status, from the gateway or from the transport.
    #[error("{}", describe_status(.0))]
    Status(Box<Status>),
    /// An argument was refused before anything was sent (e.g. data that is not JSON).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The gateway answered something the client cannot use.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
}

/// What kind of failure an [`Error`] is, for callers that branch on it (the `sockctl` exit
/// codes follow these kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad local input: endpoint, files, TLS options, arguments.
    Usage,
    /// The gateway could not be reached or is unavailable.
    Unavailable,
    /// No or an invalid token (`UNAUTHENTICATED`).
    Unauthenticated,
    /// The token lacks the scope (`PERMISSION_DENIED`).
    PermissionDenied,
    /// An unknown socket (`NOT_FOUND`).
    NotFound,
    /// The gateway refused an argument (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`,
    /// `OUT_OF_RANGE`).
    InvalidArgument,
    /// The deadline passed (`DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// The gateway refused for lack of capacity (`RESOURCE_EXHAUSTED`).
    ResourceExhausted,
    /// Anything else (`INTERNAL`, `UNKNOWN`, ...).
    Other,
}

impl Error {
    /// The gRPC status, when the failure is one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Status(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC code, when the failure is a status.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidEndpoint { .. }
            | Error::ReadFile { .. }
            | Error::Tls(_)
            | Error::InvalidArgument(_) => ErrorKind::Usage,
            Error::Connect { .. } => ErrorKind::Unavailable,
            Error::UnexpectedResponse(_) => ErrorKind::Other,
            Error::Status(status) => match status.code() {
                Code::Unavailable => ErrorKind::Unavailable,
                Code::Unauthenticated => ErrorKind::Unauthenticated,
                Code::PermissionDenied => ErrorKind::PermissionDenied,
                Code::NotFound => ErrorKind::NotFound,
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                    ErrorKind::InvalidArgument
                }
                Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
                Code::ResourceExhausted => ErrorKind::ResourceExhausted,
                _ => ErrorKind::Other,
            },
        }
    }
}

impl From<Status> for Error {
    /// Keeps the status, except two that tonic reports from the client side under codes
    /// that hide what happened: its own deadline expiring (`CANCELLED "Timeout expired"`)
    /// becomes `DEADLINE_EXCEEDED`, and a failed connection (a TLS handshake refused by the
    /// server, a connection closed under the call, an HTTP/2 error from plaintext sent to a
    /// TLS port: `UNKNOWN`, `CANCELLED` or `INTERNAL` made by tonic from a local error, which
    /// a status sent by the gateway never carries) `UNAVAILABLE`.
    fn from(status: Status) -> Self {
        let timeout = tonic::TimeoutExpired(()).to_string();
        let status = if status.code() == Code::Cancelled && status.message() == timeout {
            Status::deadline_exceeded("no answer within the call's deadline")
        } else if matches!(
            status.code(),
            Code::Unknown | Code::Cancelled | Code::Internal
        ) && status.source().is_some()
        {
            let cause = innermost(status.source()).unwrap_or_default();
            Status::unavailable(format!("connection failed: {cause}"))
        } else {
            status
        };
        Error::Status(Box::new(status))
    }
}

/// `not found: socket "x" is connected nowhere`, with the innermost transport cause when the
/// status came from the transport (tonic's own message is only "transport error").
fn describe_status(status: &Status) -> String {
    let code = code_name(status.code());
    let mut message = status.message().to_owned();
    if let Some(cause) = innermost(status.source())
        && !message.contains(&cause)
    {
        message = if message.is_empty() {
            cause
        } else {
            format!("{message}: {cause}")
        };
    }
    if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {message}")
    }
}

/// The message of the innermost error of a chain.
pub(crate) fn innermost(mut error: Option<&(dyn std::error::Error + 'static)>) -> Option<String> {
    let mut last = None;
    while let Some(e) = error {
        last = Some(e.to_string());
        error = e.source();
    }
    last
}

/// The lower-case words of a gRPC code, as operators read them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_codes() {
        let cases = [
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::Unauthenticated, ErrorKind::Unauthenticated),
            (Code::PermissionDenied, ErrorKind::PermissionDenied),
            (Code::NotFound, ErrorKind::NotFound),
            (Code::InvalidArgument, ErrorKind::InvalidArgument),
            (Code::DeadlineExceeded, ErrorKind::DeadlineExceeded),
            (Code::ResourceExhausted, ErrorKind::ResourceExhausted),
            (Code::Internal, ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let error = Error::from(Status::new(code, "m"));
            assert_eq!(error.kind(), kind, "{code:?}");
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn client_side_timeouts_are_deadline_exceeded() {
        let error = Error::from(Status::cancelled("Timeout expired"));
        assert_eq!(error.kind(), ErrorKind::DeadlineExceeded);
        let error = Error::from(Status::cancelled("by the server"));
        assert_eq!(error.code(), Some(Code::Cancelled));
    }

    #[test]
    fn status_reads_as_one_line() {
        let error = Error::from(Status::not_found("socket \"x\" is connected nowhere"));
        assert_eq!(
            error.to_string(),
            "not found: socket \"x\" is connected nowhere"
        );
        assert_eq!(
            Error::from(Status::unavailable("")).to_string(),
            "unavailable"
        );
    }
}
