//! The control reads scenario (`--reads 1000,18000`): how long `GetInfo`, `ListRooms`,
//! `ListSockets` and `GetSocket` take on one sockgate node holding N authenticated sockets,
//! each also in a room of its own (N public rooms besides the shared ones), so that a read
//! that walks every socket or every room shows up as growing with N.

use std::{fmt::Write as _, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use sockgate_client::{
    SocketControlClient,
    proto::{
        GetInfoRequest, GetSocketRequest, JoinRequest, ListRoomsRequest, ListSocketsRequest,
        SocketState, Target,
    },
};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::{
    client::{self, ROOM, Shared},
    control::Control,
    server::{Kind, Server},
};

/// Calls of each read, after one call to warm up.
const CALLS: usize = 20;
/// `Join` calls in flight while each socket is given its own room.
const JOINS_IN_FLIGHT: usize = 32;

/// The median and the slowest of one read's calls, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    median_ms: f64,
    max_ms: f64,
}

/// One size's figures: (read, timing), in the table's order.
struct Sitting {
    sockets: usize,
    timings: Vec<(&'static str, Timing)>,
}

/// Runs the scenario once per size in `sizes` and returns the report (a Markdown table).
pub async fn run(binary: &Path, work: &Path, sizes: &[usize]) -> anyhow::Result<String> {
    let mut sittings = Vec::new();
    for &sockets in sizes {
        eprintln!("== control reads with {sockets} sockets");
        let server = Server::sockgate(binary, work, Kind::Sockgate).await?;
        let result = sitting(&server, sockets).await;
        server.stop().await?;
        sittings.push(result.with_context(|| format!("control reads at {sockets} sockets"))?);
    }
    Ok(table(&sittings))
}

async fn sitting(server: &Server, sockets: usize) -> anyhow::Result<Sitting> {
    let Control::Grpc(control) = &server.nodes[0].control else {
        bail!("the control reads scenario needs sockgate");
    };
    let endpoints = [server.nodes[0].endpoint.clone()];
    let shared = Shared::new(sockets);
    let conns = client::connect_all(&endpoints, &shared, sockets, 500, Duration::from_secs(60))
        .await
        .context("connect storm")?;
    give_each_a_room(control, &conns.ids).await?;
    let probe = conns.ids[sockets / 2].clone();
    let mut sorted = conns.ids.clone();
    sorted.sort_unstable();
    let middle = sorted[sockets / 2].clone();
    let mut timings = Vec::new();
    let reads: [(&'static str, Read); 8] = [
        ("GetInfo", Read::Info),
        ("GetSocket", Read::Socket(probe)),
        (
            "ListSockets (page 100)",
            Read::Sockets(ListSocketsRequest::default()),
        ),
        (
            "ListSockets (page 100 after a token)",
            Read::Sockets(ListSocketsRequest {
                page_token: middle,
                ..ListSocketsRequest::default()
            }),
        ),
        (
            "ListSockets (room filter)",
            Read::Sockets(ListSocketsRequest {
                room: ROOM.into(),
                ..ListSocketsRequest::default()
            }),
        ),
        (
            "ListSockets (state filter)",
            Read::Sockets(ListSocketsRequest {
                state: SocketState::Authenticated as i32,
                ..ListSocketsRequest::default()
            }),
        ),
        ("ListRooms (page 100)", Read::Rooms(String::new())),
        ("ListRooms (prefix)", Read::Rooms("own:1".into())),
    ];
    for (name, read) in reads {
        timings.push((name, time(control.clone(), &read, sockets).await?));
    }
    let lost = conns.ended();
    conns.close().await;
    if lost > 0 {
        bail!("{lost} connections ended during the reads");
    }
    Ok(Sitting { sockets, timings })
}

/// Puts socket `i` in room `own:{i}` with one `Join` each.
async fn give_each_a_room(
    control: &SocketControlClient<Channel>,
    ids: &[String],
) -> anyhow::Result<()> {
    let ids: Arc<[String]> = ids.into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..JOINS_IN_FLIGHT {
        let (mut control, ids, next) = (control.clone(), ids.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else {
                    return anyhow::Ok(());
                };
                let request = JoinRequest {
                    target: Some(Target {
                        socket_ids: vec![id.clone()],
                        ..Target::default()
                    }),
                    rooms: vec![format!("own:{i}")],
                };
                control.join(request).await.context("Join")?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

enum Read {
    Info,
    Socket(String),
    Sockets(ListSocketsRequest),
    Rooms(String),
}

/// Times `CALLS` calls of `read`, after one to warm up, checking each answer's size.
async fn time(
    mut control: SocketControlClient<Channel>,
    read: &Read,
    sockets: usize,
) -> anyhow::Result<Timing> {
    let mut samples = Vec::with_capacity(CALLS);
    for call in 0..=CALLS {
        let start = Instant::now();
        let items = match read {
            Read::Info => {
                let info = control.get_info(GetInfoRequest {}).await?.into_inner();
                info.sockets.map_or(0, |s| s.total as usize)
            }
            Read::Socket(id) => {
                let request = GetSocketRequest {
                    socket_id: id.clone(),
                };
                usize::from(
                    control
                        .get_socket(request)
                        .await?
                        .into_inner()
                        .socket
                        .is_some(),
                )
            }
            Read::Sockets(request) => {
                let page = control.list_sockets(request.clone()).await?.into_inner();
                page.sockets.len()
            }
            Read::Rooms(prefix) => {
                let request = ListRoomsRequest {
                    prefix: prefix.clone(),
                    ..ListRoomsRequest::default()
                };
                control.list_rooms(request).await?.into_inner().rooms.len()
            }
        };
        let elapsed = start.elapsed();
        if items == 0 || (matches!(read, Read::Info) && items != sockets) {
            bail!("unexpected answer: {items} items (sockets: {sockets})");
        }
        if call > 0 {
            samples.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: samples[samples.len() / 2],
        max_ms: samples[samples.len() - 1],
    })
}

fn table(sittings: &[Sitting]) -> String {
    let mut out = String::from("| read |");
    for s in sittings {
        let _ = write!(out, " {} sockets: median (max), ms |", s.sockets);
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(sittings.len()));
    out.push('\n');
    let Some(first) = sittings.first() else {
        return out;
    };
    for (row, (name, _)) in first.timings.iter().enumerate() {
        let _ = write!(out, "| {name} |");
        for s in sittings {
            let t = s.timings[row].1;
            let _ = write!(out, " {:.2} ({:.2}) |", t.median_ms, t.max_ms);
        }
        out.push('\n');
    }
    out
}
