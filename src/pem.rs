//! PEM parsing, one place for the MQTT client's files (CA, client
//! certificate) and the embedded broker's (its certificate and key).
//!
//! In: a PEM file's bytes. Out: rustls' certificate chain or private key,
//! or what is wrong with the file, worded to follow its config key.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in a PEM file; at least one.
pub fn chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM ({e})"))?;
    if chain.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(chain)
}

/// The private key in a PEM file.
pub fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("holds no PEM private key ({e})"))
}
