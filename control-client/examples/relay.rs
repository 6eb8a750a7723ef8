//! A service that connects to the edge as a Socket.IO client with the managed client:
//! authenticates with a JWT, joins a room, prints what it receives and answers acks.
//!
//! ```sh
//! cargo run -p sockgate-client --example relay -- http://127.0.0.1:3000 "$JWT" chat:lobby
//! ```

use std::{convert::Infallible, time::Duration};

use serde_json::json;
use sockgate_client::sio::{ClientOptions, ClientState, Event, Handler, ManagedClient};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let token = args.next().unwrap_or_default();
    let room = args.next().unwrap_or_else(|| "chat:lobby".into());

    let client = ManagedClient::builder(ClientOptions::new(url).token(token))
        .on_disconnected(|reason| eprintln!("disconnected: {reason}"))
        .on_error(|error| eprintln!("error: {error}"))
        .on_unauthenticated(|message| eprintln!("refused: {message}"))
        .build();
    // Authenticate on every (re)connection.
    let handle = client.clone();
    client.set_on_connected(move || {
        handle.authenticate();
    });
    client.subscribe(
        "chat:message",
        Handler::new(|event: Event| async move {
            println!("chat:message {}", event.data());
            if event.wants_ack() {
                event.ack(vec![json!({"received": true})]);
            }
            Ok::<_, Infallible>(())
        }),
    );
    client.connect().await;
    if !client
        .wait_for_state(ClientState::Authenticated, Duration::from_secs(10))
        .await
    {
        eprintln!("not authenticated within 10 s");
        client.shutdown().await;
        return;
    }
    match client
        .emit_with_ack("join", &json!({"rooms": [room]}), Duration::from_secs(5))
        .await
    {
        Ok(reply) => println!("join: {}", reply.first().cloned().unwrap_or_default()),
        Err(error) => eprintln!("join failed: {error}"),
    }
    let _ = tokio::signal::ctrl_c().await;
    client.shutdown().await;
}
