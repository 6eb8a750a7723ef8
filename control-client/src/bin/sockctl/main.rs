//! `sockctl`: the operator command line of sockgate's control plane.

mod batch;
mod cli;
mod output;

use std::{io::Write, process::ExitCode, time::Duration};

use clap::{CommandFactory, Parser};
use futures_util::{StreamExt, TryStreamExt};
use sockgate_client::{
    Client, Error, ErrorKind, SendOptions, SocketFilter, Target, TlsOptions, TokenSource,
    WatchFilter,
    proto::{EventKind, SocketState},
};

use cli::{Cli, Command, Kind, SendTarget, State};

/// Exit code when `send --ack` saw sockets that did not acknowledge.
const EXIT_ACK_TIMED_OUT: u8 = 9;

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Other => 1,
        ErrorKind::Usage => 2,
        ErrorKind::Unavailable => 3,
        ErrorKind::Unauthenticated => 4,
        ErrorKind::PermissionDenied => 5,
        ErrorKind::NotFound => 6,
        ErrorKind::InvalidArgument => 7,
        ErrorKind::DeadlineExceeded => 8,
        ErrorKind::ResourceExhausted => 10,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let addr = cli.connection.addr.clone();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            match error.kind() {
                ErrorKind::Unavailable => eprintln!("sockctl: {error} (control plane at {addr})"),
                _ => eprintln!("sockctl: {error}"),
            }
            ExitCode::from(exit_code(error.kind()))
        }
    }
}

fn client(cli: &Cli) -> Result<Client, Error> {
    let c = &cli.connection;
    let mut builder = Client::builder(c.addr.clone()).deadline(c.timeout);
    let tls = c.tls || c.ca.is_some() || c.cert.is_some() || c.addr.starts_with("https://");
    if tls {
        let mut options = TlsOptions::new();
        if let Some(ca) = &c.ca {
            options = options.ca_file(ca)?;
        }
        if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
            options = options.identity_files(cert, key)?;
        }
        if let Some(domain) = &c.tls_domain {
            options = options.domain(domain.clone());
        }
        builder = builder.tls(options);
    }
    if let Some(token) = &c.token {
        builder = builder.token(TokenSource::fixed(token.trim()));
    } else if let Some(path) = &c.token_file {
        // Read once now so that a missing file is a usage error, then on every call.
        std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        let path = path.clone();
        builder = builder.token(TokenSource::refreshing(move || {
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }));
    }
    builder.connect_lazy()
}

/// Writes to stdout; false when it is closed (e.g. `sockctl watch | head -1`).
fn print(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).is_ok() && stdout.flush().is_ok()
}

fn print_json(value: &serde_json::Value) -> bool {
    print(&format!("{value}\n"))
}

async fn run(cli: Cli) -> Result<u8, Error> {
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "sockctl",
            &mut std::io::stdout(),
        );
        return Ok(0);
    }
    let client = client(&cli)?;
    let json = cli.json;
    match cli.command {
        Command::Completions { .. } => unreachable!("handled above"),
        Command::Info => info(&client, json).await?,
        Command::Sockets { room, user, state } => {
            let filter = SocketFilter {
                room,
                user_id: user,
                state: state.map(socket_state),
                page_size: 0,
            };
            sockets(&client, json, filter).await?;
        }
        Command::Socket { id } => socket(&client, json, &id).await?,
        Command::Rooms { prefix } => rooms(&client, json, &prefix).await?,
        Command::Send {
            target,
            except,
            except_sockets,
            ack,
            event,
            data,
        } => {
            let target = send_target(target)
                .except(except)
                .except_sockets(except_sockets);
            return send(&client, json, target, ack, &event, &data).await;
        }
        Command::Join { id, rooms } => {
            client
                .join(Target::sockets([id.clone()]), rooms.clone())
                .await?;
            done(json, &format!("{id} joined {}", rooms.join(", ")));
        }
        Command::Leave { id, rooms } => {
            client
                .leave(Target::sockets([id.clone()]), rooms.clone())
                .await?;
            done(json, &format!("{id} left {}", rooms.join(", ")));
        }
        Command::Disconnect { id, reason } => {
            client
                .disconnect(Target::sockets([id.clone()]), &reason)
                .await?;
            done(json, &format!("{id} disconnected"));
        }
        Command::Batch {
            file,
            batch_size,
            parallel,
        } => {
            let commands = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => {
                    let file = std::fs::File::open(&path)
                        .map_err(|source| Error::ReadFile { path, source })?;
                    batch::read(std::io::BufReader::new(file))?
                }
                None => batch::read(std::io::stdin().lock())?,
            };
            let size = batch_size as usize;
            let code = |e: &Error| exit_code(e.kind());
            return batch::run(&client, json, commands, size, parallel, code).await;
        }
        Command::Watch {
            kinds,
            events,
            room,
        } => {
            let filter = WatchFilter {
                kinds: kinds.into_iter().map(event_kind).collect(),
                event_names: events,
                room,
            };
            watch(&client, json, filter).await?;
        }
    }
    Ok(0)
}

async fn info(client: &Client, json: bool) -> Result<(), Error> {
    let info = client.info().await?;
    if json {
        print_json(&output::info_json(&info));
    } else {
        print(&output::info_text(&info));
    }
    Ok(())
}

async fn sockets(client: &Client, json: bool, filter: SocketFilter) -> Result<(), Error> {
    let sockets: Vec<_> = client.list_sockets(filter).try_collect().await?;
    if json {
        print_json(&sockets.iter().map(output::socket_json).collect());
    } else {
        print(&output::sockets_text(&sockets));
    }
    Ok(())
}

async fn socket(client: &Client, json: bool, id: &str) -> Result<(), Error> {
    let socket = client.get_socket(id).await?;
    if json {
        print_json(&output::socket_json(&socket));
    } else {
        print(&output::socket_text(&socket));
    }
    Ok(())
}

async fn rooms(client: &Client, json: bool, prefix: &str) -> Result<(), Error> {
    let rooms: Vec<_> = client.list_rooms(prefix).try_collect().await?;
    if json {
        print_json(&rooms.iter().map(output::room_json).collect());
    } else {
        print(&output::rooms_text(&rooms));
    }
    Ok(())
}

fn send_target(target: SendTarget) -> Target {
    if let Some(id) = target.socket {
        Target::sockets([id])
    } else if let Some(room) = target.room {
        Target::rooms([room])
    } else if let Some(user) = target.user {
        Target::users([user])
    } else {
        Target::all()
    }
}

/// `send`: prints the report; with `--ack`, fails when sockets did not acknowledge.
async fn send(
    client: &Client,
    json: bool,
    target: Target,
    ack: Option<Duration>,
    event: &str,
    data: &str,
) -> Result<u8, Error> {
    let data: Box<serde_json::value::RawValue> = serde_json::from_str(data)
        .map_err(|e| Error::InvalidArgument(format!("the data is not JSON: {e}")))?;
    let options = SendOptions {
        ack_timeout: ack,
        count_recipients: true,
        ..SendOptions::default()
    };
    let report = client.send(target, event, &data, options).await?;
    if json {
        print_json(&output::send_json(&report));
    } else {
        print(&output::send_text(&report, ack.is_some()));
    }
    if !report.timed_out.is_empty() {
        eprintln!(
            "sockctl: {} socket(s) did not acknowledge in time",
            report.timed_out.len()
        );
        return Ok(EXIT_ACK_TIMED_OUT);
    }
    Ok(0)
}

/// `watch`: prints events until Ctrl-C, the end of the stream, or a closed stdout.
async fn watch(client: &Client, json: bool, filter: WatchFilter) -> Result<(), Error> {
    let mut stream = std::pin::pin!(client.watch_events(filter).await?);
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(event) => {
                    let event = event?;
                    let printed = if json {
                        print_json(&output::event_json(&event))
                    } else {
                        print(&(output::event_text(&event) + "\n"))
                    };
                    if !printed {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn done(json: bool, text: &str) {
    if json {
        print_json(&serde_json::json!({"ok": true}));
    } else {
        print(&format!("{text}\n"));
    }
}

fn socket_state(state: State) -> SocketState {
    match state {
        State::Unauthorized => SocketState::Unauthorized,
        State::Authenticating => SocketState::Authenticating,
        State::Authenticated => SocketState::Authenticated,
        State::Away => SocketState::Away,
    }
}

fn event_kind(kind: Kind) -> EventKind {
    match kind {
        Kind::Connected => EventKind::Connected,
        Kind::Authenticated => EventKind::Authenticated,
        Kind::AuthFailed => EventKind::AuthFailed,
        Kind::Joined => EventKind::Joined,
        Kind::Left => EventKind::Left,
        Kind::Disconnected => EventKind::Disconnected,
        Kind::ClientEvent => EventKind::ClientEvent,
        Kind::Dropped => EventKind::Dropped,
        Kind::Recovered => EventKind::Recovered,
    }
}
