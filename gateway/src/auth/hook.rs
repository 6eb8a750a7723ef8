//! The `hook` authenticator: the backend's `SocketHooks.Authenticate` decides.

use serde_json::Value;
use sockgate_proto::AuthenticateRequest;
use tracing::warn;

use super::{Handshake, Identity, Outcome};
use crate::{hooks::Hooks, rooms};

pub(super) async fn authenticate(hooks: &Hooks, handshake: &Handshake<'_>) -> Outcome {
    let request = AuthenticateRequest {
        socket_id: handshake.socket_id.clone(),
        handshake: Some(handshake.to_proto()),
        data_json: handshake
            .event_data
            .map(Value::to_string)
            .unwrap_or_default(),
    };
    match hooks.authenticate(request).await {
        Ok(response) if response.allow => {
            let (rooms, invalid): (Vec<String>, Vec<String>) = response
                .rooms
                .into_iter()
                .partition(|room| rooms::check_name(room).is_ok());
            if !invalid.is_empty() {
                warn!(sid = %handshake.socket_id, ?invalid, "Authenticate returned invalid room names; ignored");
            }
            Outcome::Allow(Identity {
                user_id: Some(response.user_id).filter(|u| !u.is_empty()),
                room_patterns: Vec::new(),
                rooms,
                metadata: response.metadata,
                expires_at: None,
            })
        }
        Ok(_) => Outcome::Deny("denied by the Authenticate hook".into()),
        Err(error) => Outcome::Fail(format!("Authenticate hook: {error}")),
    }
}
