//! Application events from authenticated clients, sent to the backend's `OnEvent` when
//! enabled; its reply becomes the client's ack. (Watchers already got the event from the
//! `ClientMessage` extractor, in arrival order.) `OnEvent` calls of one socket run
//! concurrently: a slow call does not hold back the socket's next events.

use std::sync::Arc;

use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};
use sockgate_proto::OnEventRequest;
use tracing::{debug, warn};

use super::{Edge, message::ClientMessage, session::Session};
use crate::metrics::{EventOutcome, METRICS};

/// Handles an event that is not part of the connection protocol.
pub async fn forward<A: Adapter>(
    edge: Arc<Edge<A>>,
    socket: SocketRef<A>,
    message: ClientMessage,
    ack: AckSender<A>,
) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    let Some(identity) = session.identity() else {
        return;
    };
    METRICS.client_event(EventOutcome::Accepted);
    let Some(hooks) = edge.hooks.as_ref().filter(|h| h.forwards(&message.event)) else {
        return;
    };
    let _slot = match session.hook_slot(hooks.max_pending_per_socket) {
        Ok(slot) => slot,
        Err(first) => {
            if first {
                warn!(
                    sid = %socket.id,
                    limit = hooks.max_pending_per_socket,
                    "dropping events: too many OnEvent calls pending for this socket (hooks.max_pending_per_socket)"
                );
            }
            METRICS.client_event(EventOutcome::DroppedSaturated);
            debug!(sid = %socket.id, event = %message.event, "event dropped: no OnEvent slot");
            return;
        }
    };
    let request = OnEventRequest {
        socket_id: socket.id.to_string(),
        user_id: identity.user_id.clone().unwrap_or_default(),
        event: message.event.clone(),
        data_json: message
            .data
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        attachments: message.attachments,
        wants_ack: message.wants_ack,
        metadata: identity.metadata.clone(),
    };
    let Ok(Some(reply)) = hooks.on_event(request).await else {
        return;
    };
    if !message.wants_ack {
        return;
    }
    match serde_json::from_str::<serde_json::Value>(&reply) {
        Ok(value) => {
            let _ = ack.send(&value);
        }
        Err(e) => warn!(
            event = %message.event,
            error = %e,
            "OnEvent returned an ack_json that is not JSON; no ack sent"
        ),
    }
}
