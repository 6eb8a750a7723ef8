//! The command line: global connection options and one subcommand per operation.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (internal error on the gateway, unexpected answer)
  2  usage: bad arguments, invalid JSON, unreadable token/TLS file
  3  the gateway cannot be reached (connection refused, unavailable, TLS handshake)
  4  unauthenticated: no token, or an invalid or expired one
  5  permission denied: the token lacks the scope
  6  not found: no such socket
  7  invalid argument: the gateway refused a value (room name, event name, ...)
  8  deadline exceeded
  9  send --ack: some sockets did not acknowledge in time
 10  resource exhausted: the gateway refused for lack of capacity

Environment: SOCKGATE_ADDR, SOCKGATE_TOKEN, SOCKGATE_TOKEN_FILE, SOCKGATE_CA,
SOCKGATE_CERT, SOCKGATE_KEY, SOCKGATE_TLS, SOCKGATE_TLS_DOMAIN, SOCKGATE_TIMEOUT
stand in for the flags of the same name.";

/// Operate a sockgate gateway through its SocketControl API.
#[derive(Debug, Parser)]
#[command(name = "sockctl", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    /// Print JSON instead of tables (one object per line for `watch`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the control plane is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct Connection {
    /// Control-plane address (http://host:port, https://host:port or host:port).
    #[arg(
        long,
        env = "SOCKGATE_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// Bearer token sent with every call.
    #[arg(
        long,
        env = "SOCKGATE_TOKEN",
        hide_env_values = true,
        global = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the bearer token; read again for every call, so it can be rotated.
    #[arg(long, env = "SOCKGATE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Use TLS, trusting this CA certificate (PEM).
    #[arg(long, env = "SOCKGATE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, env = "SOCKGATE_CERT", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "SOCKGATE_KEY", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Use TLS with the system's root certificates (implied by --ca, --cert and https://).
    #[arg(long, env = "SOCKGATE_TLS", global = true)]
    pub tls: bool,
    /// Check the gateway's certificate against this name instead of the address's host.
    #[arg(long, env = "SOCKGATE_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
    /// Deadline of each call (e.g. 500ms, 10s).
    #[arg(long, env = "SOCKGATE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway version, node, uptime, nodes and socket counts.
    #[command(
        after_help = "Examples:\n  sockctl info\n  sockctl --addr https://gw:50051 --ca ca.pem --token-file token info --json"
    )]
    Info,
    /// List sockets, optionally filtered by room, user and state.
    #[command(
        after_help = "Examples:\n  sockctl sockets\n  sockctl sockets --room chat:lobby\n  sockctl sockets --user alice --state authenticated --json"
    )]
    Sockets {
        /// Only sockets in this room.
        #[arg(long)]
        room: Option<String>,
        /// Only sockets of this user.
        #[arg(long)]
        user: Option<String>,
        /// Only sockets in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
    },
    /// Show one socket.
    #[command(
        after_help = "Examples:\n  sockctl socket Xk3v9l2mQ1aB7cD0\n  sockctl socket Xk3v9l2mQ1aB7cD0 --json | jq .rooms"
    )]
    Socket {
        /// Socket id (ids may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// List rooms with their member counts.
    #[command(after_help = "Examples:\n  sockctl rooms\n  sockctl rooms --prefix chat:")]
    Rooms {
        /// Only rooms whose name starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Emit an event to sockets, rooms, users or everyone.
    #[command(
        after_help = "Examples:\n  sockctl send --room chat:lobby message '{\"text\":\"hi\"}'\n  sockctl send --user alice notification '{\"n\":1}'\n  sockctl send --socket Xk3v9l2mQ1aB7cD0 poll '{}' --ack 2s\n  sockctl send --all announcement '\"maintenance at 10:00\"' --except-room staff\n  sockctl send --room chat:lobby message '{\"text\":\"hi\"}' --except-socket Xk3v9l2mQ1aB7cD0"
    )]
    Send {
        #[command(flatten)]
        target: SendTarget,
        /// Leave out the sockets in this room (repeatable).
        #[arg(long = "except-room")]
        except: Vec<String>,
        /// Leave out the socket with this id (repeatable; ids may start with `-`).
        #[arg(long = "except-socket", value_name = "ID", allow_hyphen_values = true)]
        except_sockets: Vec<String>,
        /// Wait up to this long for each recipient's ack (e.g. 2s) and print the replies.
        #[arg(long, value_parser = humantime::parse_duration)]
        ack: Option<Duration>,
        /// Event name.
        event: String,
        /// The event's data, as JSON.
        #[arg(value_name = "JSON", allow_hyphen_values = true)]
        data: String,
    },
    /// Make a socket join rooms (server-side: no room rule applies).
    #[command(after_help = "Examples:\n  sockctl join Xk3v9l2mQ1aB7cD0 chat:lobby chat:help")]
    Join {
        /// Socket id (ids may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Rooms to join.
        #[arg(required = true)]
        rooms: Vec<String>,
    },
    /// Make a socket leave rooms.
    #[command(after_help = "Examples:\n  sockctl leave Xk3v9l2mQ1aB7cD0 chat:lobby")]
    Leave {
        /// Socket id (ids may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Rooms to leave.
        #[arg(required = true)]
        rooms: Vec<String>,
    },
    /// Disconnect a socket, telling it why (`force_disconnect {reason}`).
    #[command(
        after_help = "Examples:\n  sockctl disconnect Xk3v9l2mQ1aB7cD0\n  sockctl disconnect Xk3v9l2mQ1aB7cD0 --reason \"account suspended\""
    )]
    Disconnect {
        /// Socket id (ids may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Sent to the socket before it is disconnected.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run commands read as JSON lines (from a file, or stdin) in `Batch` calls, printing a
    /// result per command.
    #[command(after_help = "Each line is one command (blank lines are skipped):
  {\"send\": {\"event\": \"notice\", \"data\": {\"n\": 1}, \"target\": {\"socket_ids\": [\"Xk3v9l2mQ1aB7cD0\"]}}}
  {\"send\": {\"event\": \"poll\", \"target\": {\"rooms\": [\"chat:1\"]}, \"ack_timeout_ms\": 2000}}
  {\"join\": {\"target\": {\"user_ids\": [\"alice\"]}, \"rooms\": [\"chat:1\"]}}
  {\"leave\": {\"target\": {\"socket_ids\": [\"Xk3v9l2mQ1aB7cD0\"]}, \"rooms\": [\"chat:1\"]}}
  {\"disconnect\": {\"target\": {\"socket_ids\": [\"Xk3v9l2mQ1aB7cD0\"]}, \"reason\": \"bye\"}}
A target has the fields of the API's Target: socket_ids, rooms, user_ids, all, except_rooms,
except_socket_ids. Each result line gives the command's line number, its status and its
reply. The exit code is 0 when every command succeeded, else that of the first failure.

Examples:
  sockctl batch commands.jsonl
  producer | sockctl batch --batch-size 500 --json")]
    Batch {
        /// File of JSON lines; `-` or none: stdin.
        file: Option<PathBuf>,
        /// Most commands per call (the gateway's limit is control.max_batch_commands).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Run the commands of each call at once rather than in order.
        #[arg(long)]
        parallel: bool,
    },
    /// Stream lifecycle and client events until interrupted (Ctrl-C).
    #[command(
        after_help = "Examples:\n  sockctl watch\n  sockctl watch --kind client-event --event 'chat:*'\n  sockctl watch --room chat:lobby --json | jq -c 'select(.kind == \"disconnected\")'"
    )]
    Watch {
        /// Only these kinds (repeatable).
        #[arg(long = "kind", value_enum)]
        kinds: Vec<Kind>,
        /// Only client events whose name matches (`*` is a wildcard; repeatable).
        #[arg(long = "event")]
        events: Vec<String>,
        /// Only events of sockets in this room.
        #[arg(long)]
        room: Option<String>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  sockctl completions bash > /etc/bash_completion.d/sockctl\n  sockctl completions zsh > \"${fpath[1]}/_sockctl\""
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Exactly one of the target selectors of `send`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SendTarget {
    /// To this socket id.
    #[arg(long, allow_hyphen_values = true)]
    pub socket: Option<String>,
    /// To the sockets in this room.
    #[arg(long)]
    pub room: Option<String>,
    /// To the sockets of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// To every socket.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum State {
    Unauthorized,
    Authenticating,
    Authenticated,
    /// Disconnected, inside its recovery window (connection state recovery on).
    Away,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Connected,
    Authenticated,
    /// Also `auth_failed`, as `--json` writes it.
    #[value(alias = "auth_failed")]
    AuthFailed,
    Joined,
    Left,
    Disconnected,
    /// Also `client_event`, as `--json` writes it.
    #[value(alias = "client_event")]
    ClientEvent,
    Dropped,
    Recovered,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples() {
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Examples:\n  sockctl"),
                "{} has no examples",
                sub.get_name()
            );
        }
    }
    #[test]
    fn socket_ids_may_start_with_a_hyphen() {
        // Socket ids are URL-safe base64: about one in 32 starts with `-`.
        for args in [
            &["sockctl", "socket", "-hAbcdefghijklmn"][..],
            &["sockctl", "join", "-bXYZabcdefghijk", "chat:a"],
            &["sockctl", "leave", "-bXYZabcdefghijk", "chat:a", "--json"],
            &["sockctl", "disconnect", "-bXYZabcdefghijk", "--reason", "x"],
            &[
                "sockctl",
                "send",
                "--socket",
                "-bXYZabcdefghijk",
                "ev",
                "{}",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let id = match cli.command {
                Command::Socket { id }
                | Command::Join { id, .. }
                | Command::Leave { id, .. }
                | Command::Disconnect { id, .. } => id,
                Command::Send { target, .. } => target.socket.unwrap_or_default(),
                other => panic!("{other:?}"),
            };
            assert!(id.starts_with('-'), "{args:?} parsed as {id:?}");
        }
        let args = [
            "sockctl",
            "send",
            "--all",
            "ev",
            "{}",
            "--except-socket",
            "-bXYZabcdefghijk",
        ];
        let Command::Send { except_sockets, .. } = Cli::try_parse_from(args).unwrap().command
        else {
            panic!("send")
        };
        assert_eq!(except_sockets, ["-bXYZabcdefghijk"]);
    }
}
