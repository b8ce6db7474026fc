//! TLS for `https://` health checks (rustls, aws-lc provider): what the server's certificate
//! is trusted by, the handshake over any byte stream (the SSH connection's forwarded channel),
//! and certificate errors said plainly.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a server's certificate must be trusted by.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The certificates of a CA file (`ca = "certs/ca.pem"`), read with the playbook.
    Ca {
        /// As written, for messages.
        name: String,
        pem: Arc<[u8]>,
    },
    /// This machine's CA bundle (`SSL_CERT_FILE`, else `/etc/ssl/certs/ca-certificates.crt`).
    System,
    /// Any certificate (`insecure = true`): the connection is encrypted, not authenticated.
    Insecure,
}

/// How an `https://` check talks TLS.
#[derive(Debug, Clone)]
pub struct Tls {
    pub trust: Trust,
    /// Sent as SNI and checked against the certificate: the URL's host name, or when the URL
    /// names an IP address and a `Host` header is given, that header's name (without a port).
    pub server_name: String,
}

impl Tls {
    /// What `check` says of it.
    pub fn describe(&self) -> String {
        match &self.trust {
            Trust::Ca { name, .. } => {
                format!("certificate for {} trusted by ca {name}", self.server_name)
            }
            Trust::System => format!(
                "certificate for {} trusted by this machine's CA bundle",
                self.server_name
            ),
            Trust::Insecure => "INSECURE: any certificate accepted, not verified".to_string(),
        }
    }
}

/// The certificates in a PEM file's bytes: an error when there is none or one is malformed.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no `BEGIN CERTIFICATE` block in it".to_string());
    }
    Ok(certs)
}

/// The server name to send and verify: the URL's host, or the `Host` header's name when the
/// URL names an IP address (the certificate is for the name, the connection for the address).
pub fn server_name(url_host: &str, host_header: Option<&str>) -> String {
    let is_ip = url_host.parse::<std::net::IpAddr>().is_ok();
    match host_header {
        Some(header) if is_ip => {
            let name = match header.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                None => header.rsplit_once(':').map_or(header, |(h, _)| h),
            };
            name.to_string()
        }
        _ => url_host.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn config(tls: &Tls) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let roots = |pem: &[u8]| -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(pem)? {
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
        }
        Ok(roots)
    };
    Ok(match &tls.trust {
        Trust::Ca { name, pem } => builder
            .with_root_certificates(roots(pem).map_err(|e| format!("ca {name}: {e}"))?)
            .with_no_client_auth(),
        Trust::System => {
            let path = std::env::var_os("SSL_CERT_FILE")
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            let pem = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read this machine's CA bundle {}: {e} (give the check a `ca` file)",
                    path.to_string_lossy()
                )
            })?;
            builder
                .with_root_certificates(roots(&pem)?)
                .with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    })
}

/// Sends `request` inside TLS over `stream` and returns what the server answered until it
/// closed (at most `limit` bytes). Certificate problems are said plainly.
pub async fn exchange<S>(
    stream: S,
    tls: &Tls,
    request: &[u8],
    limit: usize,
) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = config(tls)?;
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|_| format!("`{}` is not a valid TLS server name", tls.server_name))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| handshake_error(&e, tls))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("TLS write: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("TLS write: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(response.len());
                response.extend_from_slice(&buf[..n.min(room)]);
                if response.len() >= limit {
                    break;
                }
            }
            // Many servers close without a TLS close_notify once they have answered.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("TLS read: {e}")),
        }
    }
    Ok(response)
}

fn handshake_error(e: &std::io::Error, tls: &Tls) -> String {
    let trusted_by = match &tls.trust {
        Trust::Ca { name, .. } => format!("ca {name}"),
        Trust::System => "this machine's CA bundle (give the check a `ca` file)".to_string(),
        Trust::Insecure => "anything".to_string(),
    };
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("certificate not trusted by {trusted_by}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "name mismatch: the certificate is not valid for {}",
                    tls.server_name
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".to_string()
            }
            other => format!("certificate refused: {other:?}"),
        },
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {e}"),
    }
}

/// `insecure = true`: every certificate is accepted; signatures are still checked, so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_url_host_or_for_an_ip_the_host_header() {
        assert_eq!(
            server_name("pixel.example.com", Some("other")),
            "pixel.example.com"
        );
        assert_eq!(
            server_name("127.0.0.1", Some("pixel.example.com:8443")),
            "pixel.example.com"
        );
        assert_eq!(server_name("::1", Some("[::1]:443")), "::1");
        assert_eq!(server_name("127.0.0.1", None), "127.0.0.1");
    }

    #[test]
    fn a_ca_file_needs_a_certificate() {
        assert!(
            certificates(b"hello")
                .unwrap_err()
                .contains("no `BEGIN CERTIFICATE`")
        );
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert_eq!(certificates(ca.cert.pem().as_bytes()).unwrap().len(), 1);
    }
}
