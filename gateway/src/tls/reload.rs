//! Certificate reload without a restart: every `reload_interval` the files of a TLS
//! listener are checked for a change (modification time and size), and SIGHUP reloads
//! them. A reload that fails (a half-written file) keeps the previous certificate
//! and is logged; the next change or SIGHUP tries again.

use std::{path::PathBuf, sync::Arc, time::SystemTime};

use tracing::{info, warn};

use super::ServerTls;

/// What identifies a version of a file.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(tls: &ServerTls) -> Vec<Stamp> {
    let config = tls.config();
    [&config.cert_file, &config.key_file, &config.client_ca_file]
        .into_iter()
        .flatten()
        .map(|path: &PathBuf| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn reload(tls: &ServerTls, why: &str) {
    match tls.reload() {
        Ok(()) => info!(section = tls.section(), why, "TLS certificate reloaded"),
        Err(e) => warn!(
            section = tls.section(),
            why,
            error = %e,
            "TLS reload failed; the previous certificate stays in use"
        ),
    }
}

/// Watches the files of `tls` every `reload_interval` (zero: only SIGHUP) until the
/// process ends.
pub fn watch(tls: Arc<ServerTls>) {
    let interval = tls.config().reload_interval;
    tokio::spawn(async move {
        let mut seen = stamps(&tls);
        let mut hangup = hangup_signal();
        let mut ticker = (!interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        loop {
            let by_signal = tokio::select! {
                () = async {
                    match &mut ticker {
                        Some(ticker) => { ticker.tick().await; }
                        None => std::future::pending().await,
                    }
                } => false,
                () = async {
                    match &mut hangup {
                        Some(signal) => { signal.recv().await; }
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let now = stamps(&tls);
            if by_signal {
                reload(&tls, "SIGHUP");
            } else if now != seen {
                reload(&tls, "files changed");
            }
            seen = now;
        }
    });
}

fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .map_err(|e| warn!(error = %e, "cannot listen for SIGHUP"))
        .ok()
}
