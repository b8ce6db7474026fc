//! A tiny HTTP server on 127.0.0.1 for health checks to reach. Imports std only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Answers request `n` (counted from 0) for `path` with the status and body `respond(n, path)`
/// gives. Returns its port and the number of requests so far.
pub fn http_server(
    respond: impl Fn(usize, &str) -> (u16, String) + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, body) = respond(seen.fetch_add(1, Ordering::SeqCst), &path);
            let reason = if code == 200 { "OK" } else { "X" };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}
