use rustls::pki_types::pem::PemObject;

use super::*;

fn self_signed(name: &str) -> CertificateDer<'static> {
    rcgen::generate_simple_self_signed(vec![name.to_owned()])
        .unwrap()
        .cert
        .der()
        .clone()
}

#[test]
fn the_pem_holds_exactly_the_certificates_the_store_accepted() {
    let certs = [self_signed("a.example"), self_signed("b.example")];
    // A DER sequence that is no certificate: rustls refuses it as a trust anchor.
    let not_a_certificate = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let roots =
        TrustRoots::from_certificates(vec![certs[0].clone(), not_a_certificate, certs[1].clone()]);
    assert_eq!(roots.store().len(), 2);
    let parsed = CertificateDer::pem_slice_iter(roots.pem())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(parsed, certs);
}

#[test]
fn the_pem_is_written_as_pem_readers_expect_it() {
    let roots = TrustRoots::from_certificates(vec![self_signed("a.example")]);
    let text = std::str::from_utf8(roots.pem()).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(text.ends_with("-----END CERTIFICATE-----\n"), "{text}");
    assert!(text.lines().all(|line| line.len() <= 64), "{text}");
}

#[test]
fn no_certificates_make_an_empty_store_and_no_pem() {
    let roots = TrustRoots::from_certificates(Vec::new());
    assert!(roots.store().is_empty());
    assert!(roots.pem().is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn a_bundle_is_read_alone_only_when_it_holds_certificates() {
    let dir = std::env::temp_dir().join(format!("openai-proxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = vec![self_signed("a.example"), self_signed("b.example")];
    let bundle = dir.join("bundle.pem");
    std::fs::write(&bundle, TrustRoots::from_certificates(certs.clone()).pem()).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    // The same certificates; rustls-native-certs does not keep the file's order.
    let mut read = bundle_alone(&bundle).unwrap();
    let mut written = certs;
    read.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    written.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    assert_eq!(read, written);
    // Nothing in it, or no file: the platform's store is read instead.
    assert_eq!(bundle_alone(&empty), None);
    assert_eq!(bundle_alone(&dir.join("missing.pem")), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
