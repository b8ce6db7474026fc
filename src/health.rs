//! Health checks: the `health` step's URL parsing, the HTTP request it sends through the SSH
//! connection, and judging the response.

use std::time::Duration;

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

/// Parses `http://host[:port]/path`. Only plain HTTP: the check runs on the host's loopback
/// or private network, behind the TLS that terminates elsewhere.
pub fn parse_url(url: &str) -> Result<HttpTarget, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("`{url}`: bad port `{p}`"))?,
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

/// The status code and body of a raw HTTP response.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next().unwrap_or("");
    if status_line.is_empty() {
        return Err("empty response (connection closed without an answer)".to_string());
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP response: {}", excerpt(status_line)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Whether a response is healthy; otherwise what to report about it.
pub fn judge(check: &HealthCheck, status: u16, body: &str) -> Result<(), String> {
    if status != check.expect {
        return Err(format!(
            "HTTP {status} (expected {}): {}",
            check.expect,
            excerpt(body)
        ));
    }
    if let Some(needle) = &check.contains
        && !body.contains(needle.as_str())
    {
        return Err(format!(
            "HTTP {status} but the body lacks `{needle}`: {}",
            excerpt(body)
        ));
    }
    Ok(())
}

/// The first 200 characters of a body, on one line.
pub fn excerpt(body: &str) -> String {
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
                .contains("not an http:// URL")
        );
        assert!(
            parse_url("http://x:99999/")
                .unwrap_err()
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
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nversion=A db=ok").unwrap();
        assert_eq!(status, 200);
        assert!(judge(&check, status, &body).is_ok());
        let err = judge(&check, 502, "<html>Bad Gateway</html>").unwrap_err();
        assert_eq!(err, "HTTP 502 (expected 200): <html>Bad Gateway</html>");
        assert!(
            judge(&check, 200, "version=B")
                .unwrap_err()
                .contains("lacks `version=A`")
        );
        assert!(parse_response(b"").is_err());
        assert!(
            parse_response(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .contains("not an HTTP response")
        );
    }
}
