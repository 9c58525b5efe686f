//! TLS on the client-facing listener (rustls, ring provider): the certificate chain and key
//! from `[server] tls_cert` / `tls_key` (PEM), ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Read `cert` (the `[server] tls_cert` file: a PEM chain, leaf first) and `key` (`tls_key`:
/// one PEM private key, PKCS#8, PKCS#1 or SEC1) and build the rustls server configuration: TLS 1.2 and 1.3 with ring's
/// cipher suites, no client certificates, ALPN `h2` then `http/1.1` (RFC 7301).
///
/// Errors: one readable sentence naming the file and what is wrong with it (unreadable, no
/// certificate or key in it, a key that does not match the certificate).
pub fn load(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("server.tls_cert = {cert:?} cannot be read as PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("server.tls_cert = {cert:?} holds no certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("server.tls_key = {key:?} cannot be read as a PEM private key ({e})"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed ({e})"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| format!("server.tls_key does not fit server.tls_cert ({e})"))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}
