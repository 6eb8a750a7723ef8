//! Tables for people, JSON for scripts.

use serde_json::{Value, json};
use sockgate_client::{
    SendReport,
    proto::{EventKind, GetInfoResponse, RoomInfo, SocketInfo, SocketState, WatchEventsResponse},
};

/// Left-aligned columns separated by two spaces, headers first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// ISO 8601 in UTC with milliseconds, as the gateway writes `time` to clients.
const ISO_MILLIS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| {
            time::OffsetDateTime::from_unix_timestamp(t.seconds)
                .ok()
                .map(|d| d + time::Duration::nanoseconds(i64::from(t.nanos)))
        })
        .and_then(|d| d.format(ISO_MILLIS).ok())
        .unwrap_or_default()
}

pub fn state_name(state: i32) -> &'static str {
    match SocketState::try_from(state).unwrap_or(SocketState::Unspecified) {
        SocketState::Unspecified => "unspecified",
        SocketState::Unauthorized => "unauthorized",
        SocketState::Authenticating => "authenticating",
        SocketState::Authenticated => "authenticated",
        SocketState::Away => "away",
    }
}

pub fn kind_name(kind: i32) -> &'static str {
    match EventKind::try_from(kind).unwrap_or(EventKind::Unspecified) {
        EventKind::Unspecified => "unspecified",
        EventKind::Connected => "connected",
        EventKind::Authenticated => "authenticated",
        EventKind::AuthFailed => "auth_failed",
        EventKind::Joined => "joined",
        EventKind::Left => "left",
        EventKind::Disconnected => "disconnected",
        EventKind::ClientEvent => "client_event",
        EventKind::Dropped => "dropped",
        EventKind::Recovered => "recovered",
    }
}

pub fn info_json(info: &GetInfoResponse) -> Value {
    let counts = info.sockets.unwrap_or_default();
    json!({
        "version": info.version,
        "node_id": info.node_id,
        "uptime_seconds": info.uptime_seconds,
        "nodes": info.nodes,
        "adapter": info.adapter,
        "sockets": {
            "unauthorized": counts.unauthorized,
            "authenticating": counts.authenticating,
            "authenticated": counts.authenticated,
            "total": counts.total,
            "away": counts.away,
        },
        "rooms": info.rooms,
    })
}

pub fn info_text(info: &GetInfoResponse) -> String {
    let counts = info.sockets.unwrap_or_default();
    let rows = [
        ("version", info.version.clone()),
        ("node", info.node_id.clone()),
        (
            "uptime",
            humantime::format_duration(std::time::Duration::from_secs(info.uptime_seconds))
                .to_string(),
        ),
        ("nodes", info.nodes.join(", ")),
        ("adapter", info.adapter.clone()),
        (
            "sockets",
            format!(
                "{} ({} authenticated, {} authenticating, {} unauthorized){}",
                counts.total,
                counts.authenticated,
                counts.authenticating,
                counts.unauthorized,
                if counts.away > 0 {
                    format!("; {} away, recoverable", counts.away)
                } else {
                    String::new()
                }
            ),
        ),
        ("rooms", info.rooms.to_string()),
    ];
    rows.iter()
        .map(|(k, v)| format!("{:<9}{v}\n", format!("{k}:")))
        .collect()
}

pub fn socket_json(socket: &SocketInfo) -> Value {
    let mut value = json!({
        "id": socket.id,
        "user_id": socket.user_id,
        "state": state_name(socket.state),
        "rooms": socket.rooms,
        "connected_at": time(socket.connected_at.as_ref()),
        "remote_address": socket.remote_address,
        "transport": socket.transport,
        "node_id": socket.node_id,
    });
    if let Some(since) = &socket.away_since {
        value["away_since"] = json!(time(Some(since)));
    }
    value
}

pub fn sockets_text(sockets: &[SocketInfo]) -> String {
    let rows: Vec<Vec<String>> = sockets
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.user_id.clone(),
                state_name(s.state).to_owned(),
                s.transport.clone(),
                s.remote_address.clone(),
                time(s.connected_at.as_ref()),
                s.rooms.join(","),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "USER",
            "STATE",
            "TRANSPORT",
            "ADDRESS",
            "CONNECTED",
            "ROOMS",
        ],
        &rows,
    )
}

pub fn socket_text(socket: &SocketInfo) -> String {
    let mut rows = vec![
        ("id", socket.id.clone()),
        ("user", socket.user_id.clone()),
        ("state", state_name(socket.state).to_owned()),
        ("rooms", socket.rooms.join(", ")),
        ("connected", time(socket.connected_at.as_ref())),
        ("address", socket.remote_address.clone()),
        ("transport", socket.transport.clone()),
        ("node", socket.node_id.clone()),
    ];
    if let Some(since) = &socket.away_since {
        rows.push(("away", format!("since {}", time(Some(since)))));
    }
    rows.iter()
        .map(|(k, v)| format!("{:<11}{v}\n", format!("{k}:")))
        .collect()
}

pub fn room_json(room: &RoomInfo) -> Value {
    json!({"name": room.name, "members": room.members})
}

pub fn rooms_text(rooms: &[RoomInfo]) -> String {
    let rows: Vec<Vec<String>> = rooms
        .iter()
        .map(|r| vec![r.name.clone(), r.members.to_string()])
        .collect();
    table(&["ROOM", "MEMBERS"], &rows)
}

pub fn send_json(report: &SendReport) -> Value {
    json!({
        "recipients": report.recipients,
        "acks": report.acks.iter().map(|(id, data)| json!({"socket_id": id, "data": data})).collect::<Vec<_>>(),
        "timed_out": report.timed_out,
    })
}

pub fn send_text(report: &SendReport, acked: bool) -> String {
    let mut out = match report.recipients {
        Some(n) => format!("sent to {n} socket(s)\n"),
        None => "sent\n".to_owned(),
    };
    if acked {
        let mut rows: Vec<Vec<String>> = report
            .acks
            .iter()
            .map(|(id, data)| vec![id.clone(), "acked".into(), data.to_string()])
            .collect();
        rows.extend(
            report
                .timed_out
                .iter()
                .map(|id| vec![id.clone(), "timed out".into(), String::new()]),
        );
        out.push_str(&table(&["SOCKET", "ACK", "REPLY"], &rows));
    }
    out
}

pub fn event_json(event: &WatchEventsResponse) -> Value {
    let mut value = json!({
        "kind": kind_name(event.kind),
        "time": time(event.time.as_ref()),
        "socket_id": event.socket_id,
        "user_id": event.user_id,
        "node_id": event.node_id,
    });
    let object = value.as_object_mut().expect("an object");
    if !event.rooms.is_empty() {
        object.insert("rooms".into(), json!(event.rooms));
    }
    if !event.event.is_empty() {
        object.insert("event".into(), json!(event.event));
        let data = serde_json::from_str::<Value>(&event.data_json)
            .unwrap_or_else(|_| Value::String(event.data_json.clone()));
        object.insert("data".into(), data);
        if !event.attachments.is_empty() {
            object.insert("attachments".into(), json!(event.attachments.len()));
        }
    }
    if !event.reason.is_empty() {
        object.insert("reason".into(), json!(event.reason));
    }
    if event.dropped > 0 {
        object.insert("dropped".into(), json!(event.dropped));
    }
    if event.recoverable {
        object.insert("recoverable".into(), json!(true));
    }
    value
}

pub fn event_text(event: &WatchEventsResponse) -> String {
    let detail = match EventKind::try_from(event.kind).unwrap_or(EventKind::Unspecified) {
        EventKind::Joined | EventKind::Left | EventKind::Recovered => event.rooms.join(","),
        EventKind::Disconnected if event.recoverable => format!("{} (recoverable)", event.reason),
        EventKind::ClientEvent => format!("{} {}", event.event, event.data_json),
        EventKind::Disconnected | EventKind::AuthFailed => event.reason.clone(),
        EventKind::Dropped => format!("{} events dropped", event.dropped),
        _ => String::new(),
    };
    let user = if event.user_id.is_empty() {
        "-"
    } else {
        &event.user_id
    };
    format!(
        "{}  {:<13}  {}  {}  {}",
        time(event.time.as_ref()),
        kind_name(event.kind),
        event.socket_id,
        user,
        detail
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_milliseconds() {
        let t = prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 123_456_789,
        };
        assert_eq!(time(Some(&t)), "2026-11-18T11:06:40.123Z");
        assert_eq!(time(None), "");
    }

    #[test]
    fn tables_align() {
        let text = table(
            &["A", "BB"],
            &[
                vec!["xxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(text, "A    BB\nxxx  1\ny    22\n");
    }
}
