//! Drives a gateway through the control plane: prints its info and sockets, sends to a
//! room, then prints the next events (Ctrl-C to stop).
//!
//! ```sh
//! SOCKGATE_ADDR=http://127.0.0.1:50051 cargo run -p sockgate-client --example control -- chat:lobby
//! ```
//! `SOCKGATE_TOKEN` is sent as the bearer token when set.

use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use sockgate_client::{Client, SocketFilter, TokenSource, WatchFilter};

#[tokio::main]
async fn main() -> Result<(), sockgate_client::Error> {
    let addr = std::env::var("SOCKGATE_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let room = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "chat:lobby".into());
    let mut builder = Client::builder(addr);
    if let Ok(token) = std::env::var("SOCKGATE_TOKEN") {
        builder = builder.token(TokenSource::fixed(token));
    }
    let client = builder.connect().await?;

    let info = client.info().await?;
    println!(
        "sockgate {} on {} ({} adapter)",
        info.version, info.node_id, info.adapter
    );
    let sockets: Vec<_> = client
        .list_sockets(SocketFilter::default())
        .try_collect()
        .await?;
    for socket in &sockets {
        println!(
            "socket {} user {:?} rooms {:?}",
            socket.id, socket.user_id, socket.rooms
        );
    }

    let report = client
        .send_to_room(&room, "chat:message", &json!({"text": "hello from Rust"}))
        .await?;
    println!("sent to {room}: {report:?}");

    let mut events = std::pin::pin!(client.watch_events(WatchFilter::default()).await?);
    while let Some(event) = events.next().await {
        let event = event?;
        println!("{:?} {} {}", event.kind(), event.socket_id, event.data_json);
    }
    Ok(())
}
