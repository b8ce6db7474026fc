//! Health checks: the `health` step's URL parsing, the HTTP request it sends through the SSH
//! connection, and judging the response.

use std::time::Duration;

use crate::secrets::Redactor;

/// Where an HTTP health check connects, as seen from the target host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// What a health step checks, rendered for one host.
#[derive(Debug, Clone)]
pub enum Probe {
    Http(HttpTarget),
    Command {
        command: String,
        dir: Option<String>,
    },
}

/// The shortest wait between two attempts of a health check: a playbook asking for less is
/// refused, and the executor never retries faster (a check must not hammer the host).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub probe: Probe,
    /// HTTP status that counts as healthy.
    pub expect: u16,
    /// Text the body must contain, if set.
    pub contains: Option<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// What is wrong with a health check's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` is not an http:// URL")]
    NotHttp { url: String },
    #[error("`{url}`: unclosed `[` in the host")]
    Unclosed { url: String },
    #[error("`{url}` has no host")]
    NoHost { url: String },
    #[error("`{url}`: bad port `{port}`")]
    BadPort { url: String, port: String },
}

/// Why an HTTP answer is not healthy; the excerpts are masked for secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("empty response (connection closed without an answer)")]
    Empty,
    #[error("not an HTTP response: {excerpt}")]
    NotHttp { excerpt: String },
    #[error("HTTP {status} (expected {expected}): {excerpt}")]
    Status {
        status: u16,
        expected: u16,
        excerpt: String,
    },
    #[error("HTTP {status} but the body lacks `{needle}`: {excerpt}")]
    Lacks {
        status: u16,
        needle: String,
        excerpt: String,
    },
}

/// The host session still reports a step's failure as text.
/// Parses `http://host[:port]/path`. Only plain HTTP: the check runs on the host's loopback
/// or private network, behind the TLS that terminates elsewhere.
pub fn parse_url(url: &str) -> Result<HttpTarget, UrlError> {
    let owned = || url.to_string();
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UrlError::NotHttp { url: owned() })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| UrlError::Unclosed { url: owned() })?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost { url: owned() });
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| UrlError::BadPort {
            url: owned(),
            port: p.to_string(),
        })?,
        None => 80,
    };
    Ok(HttpTarget {
        host,
        port,
        path: path.to_string(),
    })
}

/// A minimal HTTP/1.0 GET: the server closes the connection after answering.
pub fn request(target: &HttpTarget) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: dropship-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.host, target.port
    )
    .into_bytes()
}

/// The status code and body of a raw HTTP response. What an error shows of the response is
/// masked for secrets before it is cut or collapsed.
pub fn parse_response<'r>(
    raw: &'r [u8],
    redactor: &Redactor,
) -> Result<(u16, &'r [u8]), Unhealthy> {
    let line_end = memchr::memchr(b'\n', raw).unwrap_or(raw.len());
    let status_line = String::from_utf8_lossy(&raw[..line_end]);
    let status_line = status_line.trim_end_matches('\r');
    if status_line.is_empty() {
        return Err(Unhealthy::Empty);
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| Unhealthy::NotHttp {
            excerpt: excerpt(raw, redactor),
        })?;
    let body = memchr::memmem::find(raw, b"\r\n\r\n").map_or(&raw[raw.len()..], |i| &raw[i + 4..]);
    Ok((status, body))
}

/// Whether a response is healthy; otherwise what to report about it.
pub fn judge(
    check: &HealthCheck,
    status: u16,
    body: &[u8],
    redactor: &Redactor,
) -> Result<(), Unhealthy> {
    if status != check.expect {
        return Err(Unhealthy::Status {
            status,
            expected: check.expect,
            excerpt: excerpt(body, redactor),
        });
    }
    if let Some(needle) = &check.contains
        && memchr::memmem::find(body, needle.as_bytes()).is_none()
    {
        return Err(Unhealthy::Lacks {
            status,
            needle: needle.clone(),
            excerpt: excerpt(body, redactor),
        });
    }
    Ok(())
}

/// The first 200 characters of a body, on one line; secrets are masked over the raw bytes
/// first, so neither the cut nor the collapsed whitespace can split one.
pub fn excerpt(body: &[u8], redactor: &Redactor) -> String {
    let body = String::from_utf8_lossy(&redactor.redact_bytes(body)).into_owned();
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else if flat.is_empty() {
        "(empty body)".to_string()
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:8902/healthz?x=1").unwrap(),
            HttpTarget {
                host: "127.0.0.1".into(),
                port: 8902,
                path: "/healthz?x=1".into()
            }
        );
        assert_eq!(parse_url("http://localhost").unwrap().port, 80);
        assert_eq!(parse_url("http://[::1]:81/").unwrap().host, "::1");
        assert!(
            parse_url("https://x/")
                .unwrap_err()
                .to_string()
                .contains("not an http:// URL")
        );
        assert!(
            parse_url("http://x:99999/")
                .unwrap_err()
                .to_string()
                .contains("bad port")
        );
    }

    #[test]
    fn judges_status_and_body() {
        let check = HealthCheck {
            probe: Probe::Command {
                command: "true".into(),
                dir: None,
            },
            expect: 200,
            contains: Some("version=A".into()),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        };
        let r = Redactor::default();
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nversion=A db=ok", &r).unwrap();
        assert_eq!(status, 200);
        assert!(judge(&check, status, body, &r).is_ok());
        let err = judge(&check, 502, b"<html>Bad Gateway</html>", &r)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "HTTP 502 (expected 200): <html>Bad Gateway</html>");
        assert!(
            judge(&check, 200, b"version=B", &r)
                .unwrap_err()
                .to_string()
                .contains("lacks `version=A`")
        );
        assert!(parse_response(b"", &r).is_err());
        assert!(
            parse_response(b"SSH-2.0-OpenSSH\r\n", &r)
                .unwrap_err()
                .to_string()
                .contains("not an HTTP response")
        );
    }

    #[test]
    fn a_secret_in_a_body_is_masked_before_the_excerpt_cuts_or_collapses_it() {
        let secret = crate::secrets::Secret::new("tok-1  tok-2\ntok-3");
        let r = Redactor::new([&secret]);
        let long = format!("{}tok-1  tok-2\r\ntok-3 end", "x".repeat(195));
        let shown = excerpt(long.as_bytes(), &r);
        assert!(!shown.contains("tok"), "{shown}");
        assert!(
            shown.starts_with("xxxxx") && shown.ends_with("*****…"),
            "{shown}"
        );
        let spaced = excerpt(b"a \t tok-1  tok-2\ntok-3 \n b", &r);
        assert_eq!(spaced, "a ******** b");
    }
}
