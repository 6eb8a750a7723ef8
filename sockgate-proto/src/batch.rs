//! [`BatchCommand`]s from the requests of the unary methods, for `Batch`.

use crate::{
    BatchCommand, DisconnectRequest, JoinRequest, LeaveRequest, SendRequest, batch_command::Command,
};

impl From<SendRequest> for BatchCommand {
    fn from(request: SendRequest) -> Self {
        BatchCommand {
            command: Some(Command::Send(request)),
        }
    }
}

impl From<JoinRequest> for BatchCommand {
    fn from(request: JoinRequest) -> Self {
        BatchCommand {
            command: Some(Command::Join(request)),
        }
    }
}

impl From<LeaveRequest> for BatchCommand {
    fn from(request: LeaveRequest) -> Self {
        BatchCommand {
            command: Some(Command::Leave(request)),
        }
    }
}

impl From<DisconnectRequest> for BatchCommand {
    fn from(request: DisconnectRequest) -> Self {
        BatchCommand {
            command: Some(Command::Disconnect(request)),
        }
    }
}
