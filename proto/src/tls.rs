//! TLS client settings for `mqtts://`, shared by the hub's MQTT client and the agents': rustls
//! with the ring provider (the one provider of the workspace), trusting either one pinned CA
//! or the system's roots.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Parses every certificate of a PEM text.
///
/// # Errors
/// A message naming the problem: not PEM, or no certificate in it.
pub fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM text".into());
    }
    Ok(certs)
}

/// The client settings for a TLS connection: only the CAs of `pinned_ca_pem` are trusted when
/// it is given, the system's roots otherwise.
///
/// # Errors
/// A message naming the problem: a pinned CA that is not a PEM certificate, or no usable root.
pub fn client_config(pinned_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match pinned_ca_pem {
        Some(pem) => {
            for cert in parse_certificates(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("the pinned CA is not usable: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no CA certificate found in the system's trust store; pin the hub's CA".into(),
                );
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
