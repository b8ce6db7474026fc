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

/// Every host of a run holds a socket until the run ends (its lock is held until then), so the
/// usual soft limit of 1,024 open files would cap a run near 1,000 hosts. The hard limit is
/// what the administrator allows; raise the soft one to it, as servers do. Failure is not an
/// error: a host that then finds no descriptor says so (with the `ulimit -n` hint).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::debug!("cannot raise the open files limit");
            }
        }
    }
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
    raise_open_files_limit();
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
    use super::{log_filter, raise_open_files_limit};

    #[test]
    fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
        let read = || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit only writes the struct passed by reference.
            assert_eq!(
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
                0
            );
            limit
        };
        let before = read();
        let lowered = libc::rlimit {
            rlim_cur: before.rlim_max.min(256),
            rlim_max: before.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct; lowering the soft limit is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        raise_open_files_limit();
        let after = read();
        assert_eq!(after.rlim_cur, before.rlim_max);
        assert_eq!(after.rlim_max, before.rlim_max);
    }

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
