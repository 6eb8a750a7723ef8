//! Logging with `tracing`: text or JSON lines on stderr (stdout carries only the ready line).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogConfig, LogFormat};

/// socketioxide logs an error line for every event an extractor refuses. Ours log and
/// count their own refusals (malformed packets, events over a socket's rate) once per
/// episode; an error line per refused event would let one flooding client flood the log.
const QUIET_EXTRACTOR_ERRORS: &str = "socketioxide::handler::message=off";

/// At debug, socketioxide and engineioxide log every packet and the `auth` object: client
/// data and tokens. They stay at info unless the filter names them.
const TRANSPORT_CRATES: [&str; 2] = ["socketioxide", "engineioxide"];

/// Installs the global subscriber; `RUST_LOG` overrides `log.level`.
pub fn init(config: &LogConfig) {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| config.level.clone());
    let mut filter = EnvFilter::new(&directives)
        .add_directive(QUIET_EXTRACTOR_ERRORS.parse().expect("a valid directive"));
    for name in TRANSPORT_CRATES {
        if !directives.contains(name) {
            filter =
                filter.add_directive(format!("{name}=info").parse().expect("a valid directive"));
        }
    }
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
