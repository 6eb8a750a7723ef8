//! The `sockgate` binary: parse flags, load the configuration, run (or mint a token, or
//! inspect the configuration).

use clap::Parser;
use sockgate::{
    app,
    config::{Cli, Command, Config, run_config_command},
    telemetry, token,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Config(command)) = &cli.command {
        return run_config_command(&cli, command);
    }
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sockgate: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(Command::Token(args)) = &cli.command {
        return match token::mint(&config, args) {
            Ok(token) => {
                println!("{token}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sockgate token: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
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
