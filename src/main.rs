use std::process::ExitCode;

use clap::Parser;
use slipway::commands::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    slipway::telemetry::init(&cli.log_level, cli.log_json);
    commands::run(cli.command).await
}
