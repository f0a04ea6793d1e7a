//! The trust roots of every TLS client in the process (the upstreams' client and the AWS SDK's),
//! read from the system once.
//!
//! Where they come from: when `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, what they name and nothing
//! else (a PEM bundle, directories of PEM files; unlike OpenSSL, the one left unset adds no
//! default); otherwise, on Linux, the distribution's bundle file alone, found as OpenSSL finds it
//! (`/etc/ssl/certs/ca-certificates.crt` on Debian,
//! `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` on Amazon Linux); elsewhere, or without a
//! bundle, the platform's store (rustls-native-certs).
//!
//! Why the bundle alone: asked for the platform's store on Linux, rustls-native-certs reads the
//! bundle and then every file of the certificate directory, which on Debian holds the same
//! certificates again, one per file. OpenSSL itself opens that directory only by hash, for an
//! issuer the bundle lacks, and `update-ca-certificates` / `update-ca-trust` write every trusted
//! certificate, local ones too, into the bundle. Reading both, once for each client, was over half
//! the CPU of a Lambda cold start (README, Performance: B11), which at 128 MB is what decides how
//! many 100 ms CFS periods the start spans.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// The roots, as rustls takes them and as PEM.
pub struct TrustRoots {
    store: Arc<RootCertStore>,
    /// The same certificates PEM-encoded: the AWS SDK's client takes extra roots only as PEM.
    pem: Vec<u8>,
}

/// What is wrong when the roots are empty (a start-up error for the proxy, `upstream/client.rs`).
pub const NO_ROOTS: &str = "no trusted root certificates were found (SSL_CERT_FILE and SSL_CERT_DIR, or the system's bundle)";

/// The process's roots, read on first use.
pub fn roots() -> &'static TrustRoots {
    static ROOTS: OnceLock<TrustRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let roots = TrustRoots::from_certificates(load());
        if roots.store.is_empty() {
            tracing::warn!("{NO_ROOTS}: every TLS connection will fail");
        }
        roots
    })
}

impl TrustRoots {
    /// The certificates rustls accepts as trust anchors; the others are left out (and counted
    /// in a warning), so the PEM holds only what the store holds.
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Self {
        let mut store = RootCertStore::empty();
        let mut pem = Vec::new();
        let mut ignored = 0_usize;
        for cert in certs {
            match store.add(cert.clone()) {
                Ok(()) => append_pem(&mut pem, &cert),
                Err(_) => ignored += 1,
            }
        }
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "root certificates that are not valid trust anchors were ignored"
            );
        }
        Self {
            store: Arc::new(store),
            pem,
        }
    }

    pub fn store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }

    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

fn load() -> Vec<CertificateDer<'static>> {
    #[cfg(target_os = "linux")]
    {
        let named = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        let bundle = (!named).then(|| openssl_probe::probe().cert_file).flatten();
        if let Some(certs) = bundle.as_deref().and_then(bundle_alone) {
            return certs;
        }
    }
    let found = rustls_native_certs::load_native_certs();
    report(&found.errors);
    found.certs
}

/// The certificates of the bundle file at `path`, if it can be read and holds any; otherwise the
/// platform's store is read instead (which reports what was wrong).
#[cfg(target_os = "linux")]
fn bundle_alone(path: &std::path::Path) -> Option<Vec<CertificateDer<'static>>> {
    let found = rustls_native_certs::load_certs_from_paths(Some(path), None);
    (found.errors.is_empty() && !found.certs.is_empty()).then_some(found.certs)
}

/// Errors name files, never secrets.
fn report(errors: &[rustls_native_certs::Error]) {
    for error in errors {
        tracing::warn!(%error, "reading the trusted root certificates");
    }
}

/// One certificate in PEM: the DER in base64, 64 characters a line.
fn append_pem(pem: &mut Vec<u8>, cert: &CertificateDer<'_>) {
    pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    for line in encoded.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
}

#[cfg(test)]
mod tests;
