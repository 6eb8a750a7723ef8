//! What the Admin UI shows, in its protocol's shapes (`server_stats`, `all_sockets`):
//! each node of the cluster as a server, and the application sockets.

use serde::Serialize;
use serde_json::json;
use sockgate_proto::{SocketInfo, SocketState};

use crate::cluster::NodeStatus;

/// The application namespace, the only one the UI is shown.
pub const APP_NAMESPACE: &str = "/";

/// A node's `server_stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    server_id: String,
    hostname: String,
    pid: u32,
    /// Seconds; known for this node only (0 for the others).
    uptime: u64,
    clients_count: u32,
    polling_clients_count: u32,
    namespaces: [NamespaceDetails; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceDetails {
    name: &'static str,
    sockets_count: u32,
}

/// `server_stats` of `node`; `this_node` adds what only this process knows.
pub fn server_stats(node: &NodeStatus, this_node: Option<u64>) -> ServerStats {
    let total = node.sockets.total;
    ServerStats {
        server_id: node.node_id.clone(),
        hostname: node.node_id.clone(),
        pid: this_node.map_or(0, |_| std::process::id()),
        uptime: this_node.unwrap_or(0),
        clients_count: total,
        polling_clients_count: 0,
        namespaces: [NamespaceDetails {
            name: APP_NAMESPACE,
            sockets_count: total,
        }],
    }
}

/// A socket as the UI lists it. Its user id, state and node are its `data`; its handshake
/// is what the gateway keeps of it (address, time), not its headers (cookies, tokens).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializedSocket {
    id: String,
    client_id: String,
    transport: String,
    nsp: &'static str,
    data: serde_json::Value,
    handshake: serde_json::Value,
    rooms: Vec<String>,
}

/// `socket` in the UI's shape. Its rooms are its public rooms and, as Socket.IO lists it,
/// its own id (the UI shows that one as private); internal `$sg:` rooms are never listed.
pub fn serialize(socket: SocketInfo) -> SerializedSocket {
    let state = match SocketState::try_from(socket.state) {
        Ok(SocketState::Authenticated) => "authenticated",
        Ok(SocketState::Authenticating) => "authenticating",
        _ => "unauthorized",
    };
    let connected_ms = socket
        .connected_at
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000));
    let mut rooms = Vec::with_capacity(1 + socket.rooms.len());
    rooms.push(socket.id.clone());
    rooms.extend(socket.rooms);
    SerializedSocket {
        client_id: socket.id.clone(),
        data: json!({"userId": socket.user_id, "state": state, "node": socket.node_id}),
        handshake: json!({
            "address": socket.remote_address,
            "issued": connected_ms,
            "time": crate::clock::iso_from_ms(connected_ms),
        }),
        id: socket.id,
        transport: socket.transport,
        nsp: APP_NAMESPACE,
        rooms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_shows_its_user_state_rooms_and_handshake() {
        let socket = SocketInfo {
            id: "abc".into(),
            user_id: "alice".into(),
            state: SocketState::Authenticated as i32,
            rooms: vec!["chat:x".into()],
            connected_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 500_000_000,
            }),
            remote_address: "127.0.0.1:5000".into(),
            transport: "websocket".into(),
            node_id: "n1".into(),
            away_since: None,
        };
        let shown = serde_json::to_value(serialize(socket)).unwrap();
        assert_eq!(
            shown,
            json!({
                "id": "abc", "clientId": "abc", "transport": "websocket", "nsp": "/",
                "data": {"userId": "alice", "state": "authenticated", "node": "n1"},
                "handshake": {"address": "127.0.0.1:5000", "issued": 1500, "time": "1970-01-01T00:00:01.500Z"},
                "rooms": ["abc", "chat:x"],
            })
        );
    }
}
