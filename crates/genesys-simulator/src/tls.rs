//! TLS for every listener (`--tls-cert`/`--tls-key`), and a throwaway
//! certificate authority for tests and demos: [`TestCa`] issues a server
//! certificate for `127.0.0.1`, `::1` and `localhost` that clients trust
//! through the CA certificate alone (e.g. `SSL_CERT_FILE`).

use std::io;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509};

/// The acceptor every listener serves TLS with.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> io::Result<SslAcceptorBuilder> {
    let named = |what: &str, path: &Path, e: openssl::error::ErrorStack| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(io::Error::other)?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| named("--tls-cert", cert, e))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| named("--tls-key", key, e))?;
    builder
        .check_private_key()
        .map_err(|e| named("--tls-key does not match --tls-cert", key, e))?;
    Ok(builder)
}

/// A certificate authority made up on the spot, with one server
/// certificate it signed for the loopback names. PEM text throughout.
pub struct TestCa {
    /// The CA certificate: what clients must trust.
    pub ca_cert_pem: String,
    /// The server certificate (signed by the CA).
    pub server_cert_pem: String,
    /// The server certificate's private key.
    pub server_key_pem: String,
}

/// Paths of a [`TestCa`] written to disk.
pub struct TestCaFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// A fresh CA and a server certificate for `127.0.0.1`, `::1` and
    /// `localhost`, both valid from now for 30 days.
    pub fn generate() -> Result<TestCa, openssl::error::ErrorStack> {
        let ca_key = new_key()?;
        let ca_cert = {
            let mut b = X509::builder()?;
            b.set_version(2)?;
            let value = serial()?;
            b.set_serial_number(&value)?;
            let name = name("genesys-simulator test CA")?;
            b.set_subject_name(&name)?;
            b.set_issuer_name(&name)?;
            b.set_pubkey(&ca_key)?;
            let value = Asn1Time::days_from_now(0)?;
            b.set_not_before(&value)?;
            let value = Asn1Time::days_from_now(30)?;
            b.set_not_after(&value)?;
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            )?;
            let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
            b.append_extension(ski)?;
            b.sign(&ca_key, MessageDigest::sha256())?;
            b.build()
        };
        let server_key = new_key()?;
        let server_cert = {
            let mut b = X509::builder()?;
            b.set_version(2)?;
            let value = serial()?;
            b.set_serial_number(&value)?;
            let value = name("localhost")?;
            b.set_subject_name(&value)?;
            b.set_issuer_name(ca_cert.subject_name())?;
            b.set_pubkey(&server_key)?;
            let value = Asn1Time::days_from_now(0)?;
            b.set_not_before(&value)?;
            let value = Asn1Time::days_from_now(30)?;
            b.set_not_after(&value)?;
            b.append_extension(BasicConstraints::new().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_encipherment()
                    .build()?,
            )?;
            b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .ip("127.0.0.1")
                .ip("::1")
                .build(&b.x509v3_context(Some(&ca_cert), None))?;
            b.append_extension(san)?;
            let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca_cert), None))?;
            b.append_extension(ski)?;
            let aki = AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(&ca_cert), None))?;
            b.append_extension(aki)?;
            b.sign(&ca_key, MessageDigest::sha256())?;
            b.build()
        };
        let pem = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap_or_default();
        Ok(TestCa {
            ca_cert_pem: pem(ca_cert.to_pem()?),
            server_cert_pem: pem(server_cert.to_pem()?),
            server_key_pem: pem(server_key.private_key_to_pem_pkcs8()?),
        })
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    pub fn write_to(&self, dir: &Path) -> io::Result<TestCaFiles> {
        let files = TestCaFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&files.ca_cert, &self.ca_cert_pem)?;
        std::fs::write(&files.server_cert, &self.server_cert_pem)?;
        std::fs::write(&files.server_key, &self.server_key_pem)?;
        Ok(files)
    }
}

fn new_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut n = BigNum::new()?;
    n.rand(127, MsbOption::MAYBE_ZERO, false)?;
    n.to_asn1_integer()
}

fn name(common_name: &str) -> Result<openssl::x509::X509Name, openssl::error::ErrorStack> {
    let mut b = X509NameBuilder::new()?;
    b.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_verifies_against_the_ca() {
        let ca = TestCa::generate().unwrap();
        let ca_cert = X509::from_pem(ca.ca_cert_pem.as_bytes()).unwrap();
        let server = X509::from_pem(ca.server_cert_pem.as_bytes()).unwrap();
        assert!(server.verify(&ca_cert.public_key().unwrap()).unwrap());
        let other = TestCa::generate().unwrap();
        let other_ca = X509::from_pem(other.ca_cert_pem.as_bytes()).unwrap();
        assert!(!server.verify(&other_ca.public_key().unwrap()).unwrap());
    }
}
