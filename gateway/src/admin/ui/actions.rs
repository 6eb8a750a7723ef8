//! The Admin UI's actions (`join`, `leave`, `_disconnect`, `emit`), performed through the
//! `SocketControl` methods the control port serves, with their rules (server-owned rooms,
//! internal rooms refused, events to authenticated sockets only, cluster-wide), and logged
//! with the operator's name. With `admin.ui.readonly` every action is refused (and none is
//! advertised).

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, de::SeqAccess};
use serde_json::Value;
use socketioxide::{
    adapter::{Adapter, LocalAdapter},
    extract::{Data, SocketRef},
};
use sockgate_proto::{
    DisconnectRequest, JoinRequest, LeaveRequest, SendRequest, Target,
    socket_control_server::SocketControl,
};
use tonic::Request;
use tracing::{info, warn};

use super::{login::Operator, view::APP_NAMESPACE};
use crate::{control::ControlService, rooms};

/// The UI's events that act on sockets.
pub const ACTION_EVENTS: [&str; 4] = ["join", "leave", "_disconnect", "emit"];

/// Most arguments an action event may carry.
const MAX_ARGS: usize = 8;

/// An event's arguments, however many (socket.io's `(nsp, room, filter?)` and the like).
#[derive(Debug)]
pub struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "at most {MAX_ARGS} arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    if args.len() == MAX_ARGS {
                        return Err(serde::de::Error::invalid_length(MAX_ARGS + 1, &self));
                    }
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        // A tuple: socketioxide then hands over every argument, not the first one only.
        deserializer.deserialize_tuple(MAX_ARGS, Visitor)
    }
}

/// What an operator asked for.
#[derive(Debug)]
enum Action {
    Join { room: String, target: Target },
    Leave { room: String, target: Target },
    Disconnect { target: Target },
    Emit { request: SendRequest },
}

/// The sockets a UI filter names: none, every socket; a socket id, that socket; else a
/// room (checked by the control methods as any target room).
fn target(filter: Option<&Value>) -> Target {
    match filter.and_then(Value::as_str).filter(|f| !f.is_empty()) {
        None => Target {
            all: true,
            ..Target::default()
        },
        Some(id) if rooms::parse_sid(id).is_some() => Target {
            socket_ids: vec![id.to_owned()],
            ..Target::default()
        },
        Some(room) => Target {
            rooms: vec![room.to_owned()],
            ..Target::default()
        },
    }
}

fn text(args: &[Value], at: usize, what: &str) -> Result<String, String> {
    args.get(at)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} is not a string"))
}

impl Action {
    fn parse(event: &str, Args(args): Args) -> Result<Action, String> {
        let nsp = text(&args, 0, "the namespace")?;
        if nsp != APP_NAMESPACE {
            return Err(format!("namespace {nsp:?} is not {APP_NAMESPACE:?}"));
        }
        match event {
            "join" => Ok(Action::Join {
                room: text(&args, 1, "the room")?,
                target: target(args.get(2)),
            }),
            "leave" => Ok(Action::Leave {
                room: text(&args, 1, "the room")?,
                target: target(args.get(2)),
            }),
            "_disconnect" => Ok(Action::Disconnect {
                target: target(args.get(2)),
            }),
            "emit" => {
                if args.len() > 4 {
                    return Err("emit takes one data argument at most".into());
                }
                Ok(Action::Emit {
                    request: SendRequest {
                        event: text(&args, 2, "the event")?,
                        data_json: args.get(3).map(Value::to_string).unwrap_or_default(),
                        target: Some(target(args.get(1))),
                        ..SendRequest::default()
                    },
                })
            }
            other => Err(format!("{other:?} is no action")),
        }
    }
}

/// Performs the UI's actions.
pub struct Actions<A: Adapter> {
    control: ControlService<A>,
    readonly: bool,
}

impl<A: Adapter> Actions<A> {
    /// Actions through `control`; none if `readonly`.
    pub fn new(control: ControlService<A>, readonly: bool) -> Arc<Self> {
        Arc::new(Self { control, readonly })
    }

    /// Handles the action events of an operator's `/admin` socket.
    pub fn register(self: &Arc<Self>, socket: &SocketRef<LocalAdapter>) {
        for event in ACTION_EVENTS {
            let actions = self.clone();
            socket.on(
                event,
                async move |socket: SocketRef<LocalAdapter>, Data(args): Data<Args>| {
                    let operator = socket
                        .extensions
                        .get::<Operator>()
                        .map_or_else(|| "?".into(), |o| o.name);
                    actions.perform(&operator, event, args).await;
                },
            );
        }
    }

    async fn perform(&self, operator: &str, event: &str, args: Args) {
        if self.readonly {
            warn!(
                operator,
                event, "admin ui: action refused (admin.ui.readonly)"
            );
            return;
        }
        let action = match Action::parse(event, args) {
            Ok(action) => action,
            Err(error) => {
                warn!(operator, event, %error, "admin ui: action refused");
                return;
            }
        };
        let description = format!("{action:?}");
        match self.call(action).await {
            Ok(()) => info!(operator, action = %description, "admin ui: action performed"),
            Err(status) => warn!(
                operator,
                action = %description,
                error = %status.message(),
                "admin ui: action refused"
            ),
        }
    }

    async fn call(&self, action: Action) -> Result<(), tonic::Status> {
        let control = &self.control;
        match action {
            Action::Join { room, target } => {
                let request = JoinRequest {
                    target: Some(target),
                    rooms: vec![room],
                };
                control.join(Request::new(request)).await.map(drop)
            }
            Action::Leave { room, target } => {
                let request = LeaveRequest {
                    target: Some(target),
                    rooms: vec![room],
                };
                control.leave(Request::new(request)).await.map(drop)
            }
            Action::Disconnect { target } => {
                let request = DisconnectRequest {
                    target: Some(target),
                    reason: String::new(),
                };
                control.disconnect(Request::new(request)).await.map(drop)
            }
            Action::Emit { request } => control.send(Request::new(request)).await.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(event: &str, args: Value) -> Result<Action, String> {
        let Value::Array(args) = args else {
            unreachable!()
        };
        Action::parse(event, Args(args))
    }

    #[test]
    fn filters_name_a_socket_a_room_or_everyone() {
        let sid = socketioxide::socket::Sid::new().to_string();
        let Ok(Action::Disconnect { target }) = parse("_disconnect", json!(["/", false, sid]))
        else {
            panic!("not a disconnect")
        };
        assert_eq!(target.socket_ids, [sid]);
        let Ok(Action::Leave { room, target }) = parse("leave", json!(["/", "a", "chat:x"])) else {
            panic!("not a leave")
        };
        assert_eq!((room.as_str(), target.rooms), ("a", vec!["chat:x".into()]));
        let Ok(Action::Join { target, .. }) = parse("join", json!(["/", "a"])) else {
            panic!("not a join")
        };
        assert!(target.all);
    }

    #[test]
    fn other_namespaces_and_shapes_are_refused() {
        assert!(parse("join", json!(["/admin", "a"])).is_err());
        assert!(parse("join", json!(["/"])).is_err());
        assert!(parse("emit", json!(["/", null, "e", 1, 2])).is_err());
        let Ok(Action::Emit { request }) = parse("emit", json!(["/", null, "e", {"a": 1}])) else {
            panic!("not an emit")
        };
        assert_eq!(request.data_json, r#"{"a":1}"#);
    }
}
