//! How the benchmark tells a server to send: sockgate's `SocketControl.Send` (or `Batch`)
//! over gRPC, the reference's REST API over HTTP/1.1 keep-alive.

use std::net::SocketAddr;

use anyhow::bail;
use sockgate_client::{
    SocketControlClient,
    proto::{BatchRequest, SendRequest, Target},
};
use tonic::transport::Channel;

use crate::{
    client::{EVENT, ROOM},
    http::HttpConnection,
};

/// The control API of a server under test.
#[derive(Clone)]
pub enum Control {
    /// sockgate: one HTTP/2 channel shared by every sender.
    Grpc(SocketControlClient<Channel>),
    /// The reference: REST on this address, one connection per sender.
    Rest(SocketAddr),
}

/// One sender: several may run concurrently, each sends one command at a time.
pub enum Sender {
    /// gRPC.
    Grpc(SocketControlClient<Channel>),
    /// REST.
    Rest(HttpConnection),
}

impl Control {
    /// A new sender.
    pub async fn sender(&self) -> anyhow::Result<Sender> {
        Ok(match self {
            Control::Grpc(client) => Sender::Grpc(client.clone()),
            Control::Rest(addr) => Sender::Rest(HttpConnection::connect(*addr).await?),
        })
    }
}

impl Sender {
    /// Sends the benchmark event with `data` (JSON) to every socket of the room.
    pub async fn send_to_room(&mut self, data: String) -> anyhow::Result<()> {
        let target = Target {
            rooms: vec![ROOM.into()],
            ..Target::default()
        };
        self.send(target, &format!("/api/socket/room/{ROOM}/send"), data)
            .await
    }

    /// Sends the benchmark event with `data` (JSON) to one socket.
    pub async fn send_to_socket(&mut self, id: &str, data: String) -> anyhow::Result<()> {
        let target = Target {
            socket_ids: vec![id.into()],
            ..Target::default()
        };
        self.send(target, &format!("/api/socket/client/{id}/send"), data)
            .await
    }

    /// Sends the benchmark event to each `(socket id, data)` in one `Batch` (sockgate
    /// only: the reference has no such API); whether each command succeeded.
    pub async fn batch_to_sockets(
        &mut self,
        sends: Vec<(&str, String)>,
    ) -> anyhow::Result<Vec<bool>> {
        let Sender::Grpc(client) = self else {
            bail!("the reference has no batch API");
        };
        let commands = sends
            .into_iter()
            .map(|(id, data)| {
                let target = Target {
                    socket_ids: vec![id.into()],
                    ..Target::default()
                };
                request(data, target).into()
            })
            .collect();
        let results = client
            .batch(BatchRequest {
                commands,
                parallel: false,
            })
            .await?
            .into_inner()
            .results;
        Ok(results.iter().map(|r| r.code == 0).collect())
    }

    /// A `Send` to `target` over gRPC, or a POST to the reference's `rest_path`.
    async fn send(&mut self, target: Target, rest_path: &str, data: String) -> anyhow::Result<()> {
        match self {
            Sender::Grpc(client) => {
                client.send(request(data, target)).await?;
                Ok(())
            }
            Sender::Rest(http) => rest_send(http, rest_path, &data).await,
        }
    }
}

fn request(data_json: String, target: Target) -> SendRequest {
    SendRequest {
        event: EVENT.into(),
        data_json,
        target: Some(target),
        ..SendRequest::default()
    }
}

async fn rest_send(http: &mut HttpConnection, path: &str, data: &str) -> anyhow::Result<()> {
    let body = format!("{{\"topic\":\"{EVENT}\",\"data\":{data}}}");
    let answer = http.post(path, &body).await?;
    if !answer.contains("\"success\":true") {
        bail!("POST {path}: {answer}");
    }
    Ok(())
}
