//! The `dropship` binary: parse arguments, run, map how it ended to an exit status.

use std::process::ExitCode;

use clap::Parser;
use dropship::cli::{self, Cli};
use dropship::commands::ExitStatus;

/// `DROPSHIP_LOG`: a bare level up to `debug` applies to dropship's own events (the SSH
/// library's internals would drown them); `trace` shows everything; a filter with `=` or `,`
/// is taken as written (tracing's `EnvFilter` syntax). Unset or invalid: warnings only.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let spec = spec.map(str::trim).unwrap_or("");
    let directives = match spec.to_ascii_lowercase().as_str() {
        "" => "warn".to_string(),
        "trace" => "trace".to_string(),
        level @ ("error" | "warn" | "info" | "debug") => format!("warn,dropship={level}"),
        _ => spec.to_string(),
    };
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("warn"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("DROPSHIP_LOG").ok().as_deref()))
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

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_is_dropships_own_and_trace_shows_everything() {
        let shown = |spec: Option<&str>| log_filter(spec).to_string();
        assert_eq!(shown(None), "warn");
        assert_eq!(shown(Some("")), "warn");
        let debug = shown(Some("debug"));
        assert!(
            debug.contains("dropship=debug") && debug.contains("warn"),
            "{debug}"
        );
        assert!(shown(Some("INFO")).contains("dropship=info"));
        assert_eq!(shown(Some("trace")), "trace");
        assert!(shown(Some("russh=debug")).contains("russh=debug"));
        assert_eq!(shown(Some("not a filter ===")), "warn");
    }
}
