//! A TLS identity for servers on loopback: a fresh self-signed certificate for 127.0.0.1, which
//! no system trusts (what a private CA looks like to the proxy), and an acceptor presenting it.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

pub struct SelfSigned {
    pub acceptor: TlsAcceptor,
    pub cert: pki_types::CertificateDer<'static>,
}

pub fn self_signed_for_loopback() -> SelfSigned {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    SelfSigned {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        cert: certified.cert.der().clone(),
    }
}
