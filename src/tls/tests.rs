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
