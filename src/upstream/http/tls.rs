//! TLS trust for the gateway's outgoing connections (upstream HTTPS, and the PEM files of
//! `rediss://`): the system CA store, plus the CAs of a configured PEM file (RFC 7468).

use std::path::Path;
use std::sync::{Arc, LazyLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Largest CA file read, in bytes (a bundle of a few hundred certificates).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// The certificates of a PEM file, in order.
///
/// Errors: a readable reason when the file cannot be read, is larger than 4 MiB, holds a
/// malformed PEM block, or holds no certificate.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    if size > MAX_PEM_BYTES {
        return Err(format!("{} is larger than {MAX_PEM_BYTES} bytes", path.display()));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The system's trusted CAs (`rustls-native-certs`: the OpenSSL directories on Linux,
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` when set), read once. When the system store is missing
/// or empty, the Mozilla roots compiled in (`webpki-roots`) stand in, with a warning.
static SYSTEM_ROOTS: LazyLock<RootCertStore> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            errors = ?found.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "no system CA certificates found; trusting the Mozilla roots built into sekisho"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
});

/// Install the one crypto provider of every TLS client (ring) as the process default, so
/// libraries that build their own client configuration (the Redis client) use it too.
pub fn install_provider() {
    // Fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client configuration trusting the system store plus the certificates in `extra`.
///
/// Errors: a readable reason when a certificate of `extra` is not a valid trust anchor.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    install_provider();
    let mut roots = SYSTEM_ROOTS.clone();
    for cert in extra {
        roots.add(cert.clone()).map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
