//! `dropship facts`: the docker engine's and compose's versions on a host.
//! May import: `remote::script`.

use crate::sh;

/// Reports the docker engine's and compose's versions (`docker=`, `compose=` lines).
pub fn script() -> String {
    sh!(
        "printf 'docker=%s\\n' \"$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null || echo none)\"; \
         printf 'compose=%s\\n' \"$(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null || echo none)\""
    )
    .into_string()
}

/// Turns `script()` output into one line such as `docker 28.2.2, compose 2.30.0`.
pub fn summarize(stdout: &str) -> String {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("none")
            .to_string()
    };
    format!("docker {}, compose {}", get("docker="), get("compose="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_summarized() {
        assert_eq!(
            summarize("docker=28.2.2\ncompose=2.30.0\n"),
            "docker 28.2.2, compose 2.30.0"
        );
        assert_eq!(summarize("docker=\n"), "docker none, compose none");
    }

    #[test]
    fn the_script_is_the_one_it_always_was() {
        assert_eq!(
            script(),
            "printf 'docker=%s\\n' \"$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo none)\"; printf 'compose=%s\\n' \"$(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null || echo none)\""
        );
    }
}
