//! A tiny HTTP server on 127.0.0.1 for health checks to reach, and an HTTPS one with a CA made
//! for the test (rcgen, rustls). Imports std, rcgen and rustls only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Answers request `n` (counted from 0) for `path` with the status and body `respond(n, path)`
/// gives. Returns its port and the number of requests so far.
pub fn http_server(
    respond: impl Fn(usize, &str) -> (u16, String) + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let (port, count, _) = http_server_with_heads(respond);
    (port, count)
}

/// `http_server`, also recording the head (request line and headers) of every request.
pub fn http_server_with_heads(
    respond: impl Fn(usize, &str) -> (u16, String) + Send + 'static,
) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = heads.clone();
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
            recorded.lock().unwrap().push(request.to_string());
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
    (port, count, heads)
}

/// An HTTPS server on 127.0.0.1 with a certificate for `names`, signed by a CA made for the
/// test (`ca_pem`). Answers every request 200 `body`; records each request's head.
pub struct HttpsServer {
    pub port: u16,
    /// The test CA's certificate, PEM.
    pub ca_pem: String,
    /// The head (request line and headers) of every request that got through TLS.
    pub heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpsServer {
    pub fn start(names: &[&str], body: &'static str) -> HttpsServer {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "dropship test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // A client that refuses the certificate ends the handshake: read fails.
                let mut buf = [0u8; 4096];
                let Ok(n) = tls.read(&mut buf) else { continue };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.lock().unwrap().push(head);
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        HttpsServer {
            port,
            ca_pem: ca.pem(),
            heads,
        }
    }
}
