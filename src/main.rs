//! The `dropship` binary: parse arguments, run, map how it ended to an exit status.

use std::process::ExitCode;

use clap::Parser;
use dropship::cli::{self, Cli};
use dropship::commands::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DROPSHIP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dropship: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let status = runtime.block_on(cli::run(cli));
    if let ExitStatus::BadInput(error) = &status {
        // Input errors quote the user's files: shown, never interpreted by the terminal.
        eprintln!("error: {}", dropship::output::visible(&error.to_string()));
    }
    ExitCode::from(status.exit_code())
}
