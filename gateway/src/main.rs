//! The `sockgate` binary: parse flags, load the configuration, run.

use clap::Parser;
use sockgate::{
    app,
    config::{Cli, Config},
    telemetry,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sockgate: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&config.log);
    match app::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sockgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
