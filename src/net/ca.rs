//! Extra trusted CAs (`genesys.ca_file`): a PEM bundle read and checked
//! at start-up, added to the system roots.

use std::io;
use std::path::Path;

/// Why `genesys.ca_file` was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not a PEM certificate bundle: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty { path: String },
}

/// The certificates of a PEM bundle (one or more), trusted in addition to
/// the system's roots.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<openssl::x509::X509>, CaBundleError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| CaBundleError::Read {
        path: shown.clone(),
        source,
    })?;
    let certificates =
        openssl::x509::X509::stack_from_pem(&pem).map_err(|e| CaBundleError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(CaBundleError::Empty { path: shown });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundles_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_ca_bundle(&missing),
            Err(CaBundleError::Read { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            load_ca_bundle(&empty),
            Err(CaBundleError::Empty { .. })
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(load_ca_bundle(&broken).is_err());
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, self_signed_pem()).unwrap();
        assert_eq!(load_ca_bundle(&good).unwrap().len(), 1);
    }

    /// A throwaway self-signed certificate, made with the OpenSSL the
    /// bridge links anyway.
    fn self_signed_pem() -> Vec<u8> {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test CA").unwrap();
        let name = name.build();
        let mut builder = x509::X509::builder().unwrap();
        builder.set_version(2).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        builder.build().to_pem().unwrap()
    }
}
