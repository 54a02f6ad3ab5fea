//! The hub's TLS identity: one certificate for the gRPC, HTTP and MQTT listeners.
//!
//! With `--tls` and no certificate of the operator's, the hub is its own CA: on first start it
//! creates `DATA_DIR/tls/ca.pem` and `ca.key` (mode 0600, never leaves the data folder), and
//! at every start it issues `server.pem`/`server.key` from that CA for localhost, 127.0.0.1,
//! ::1, the host name and every `--tls-san`, so a new name only needs a restart. Devices and
//! the CLI pin the CA, not the server certificate. With `--tls-cert`/`--tls-key` the
//! operator's chain is served as given, and devices are handed `--tls-ca` (or, without it,
//! the last certificate of the chain file).
//!
//! rustls with the ring provider, named explicitly, so nothing depends on a process-wide
//! default provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use shoal_store::IoError;
use tokio_rustls::TlsAcceptor;

use crate::error::{HubError, HubResult};

/// The folder of the data folder the generated CA and server certificate live in.
pub const TLS_DIR: &str = "tls";
/// ALPN of the gRPC listener: tonic's clients insist on HTTP/2 being negotiated.
pub const ALPN_GRPC: &[u8] = b"h2";
/// ALPN of the HTTP listener (HTTP/1.1 only).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

const CA_COMMON_NAME: &str = "Shoal hub CA";

/// Where the hub's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// The hub's own CA in `DATA_DIR/tls` (created on first start) issues the server
    /// certificate at every start; `extra_sans` are host names or addresses beyond
    /// localhost, 127.0.0.1, ::1 and the host name.
    Generated { extra_sans: Vec<String> },
    /// The operator's certificate chain and private key (PEM files). `ca`: the CA certificate
    /// handed to devices and clients, when it is not the last certificate of the chain.
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: Option<PathBuf>,
    },
}

/// The hub's certificate and key, ready for every listener, and the CA devices pin.
pub struct HubTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: String,
    ca_path: Option<PathBuf>,
}

impl std::fmt::Debug for HubTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTls")
            .field("chain_len", &self.chain.len())
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl HubTls {
    /// Loads the operator's files or the hub's own CA (creating it on first start) and issues
    /// the server certificate.
    ///
    /// # Errors
    /// `Config` naming a file that is missing or not what it should be; `Io` when the data
    /// folder cannot be written.
    pub fn load(data_dir: &Path, source: &TlsSource) -> HubResult<HubTls> {
        match source {
            TlsSource::Generated { extra_sans } => generate(&data_dir.join(TLS_DIR), extra_sans),
            TlsSource::Files { cert, key, ca } => from_files(cert, key, ca.as_deref()),
        }
    }

    /// The PEM of the CA devices and clients are told to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA file, when it is one the hub wrote or was given (for messages and tests).
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// A TLS acceptor for one listener, offering `alpn` (most preferred first).
    ///
    /// # Errors
    /// `Config` when the key does not fit the certificate or rustls refuses them.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> HubResult<TlsAcceptor> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| HubError::Config(format!("TLS settings: {e}")))?
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), self.key.clone_key())
                .map_err(|e| {
                    HubError::Config(format!(
                        "the TLS certificate and key cannot be used together: {e}"
                    ))
                })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn generate(dir: &Path, extra_sans: &[String]) -> HubResult<HubTls> {
    std::fs::create_dir_all(dir).map_err(IoError::with(format!(
        "create the TLS folder {}",
        dir.display()
    )))?;
    let ca_key_path = dir.join("ca.key");
    let ca_path = dir.join("ca.pem");
    let ca_key = if ca_key_path.exists() {
        let text = read_text(&ca_key_path)?;
        KeyPair::from_pem(&text).map_err(|e| {
            HubError::Config(format!(
                "{} is not a private key the hub can use ({e}); move the TLS folder aside to \
                 create a new CA (devices must then be given the new ca.pem)",
                ca_key_path.display()
            ))
        })?
    } else {
        let key = KeyPair::generate().map_err(rcgen_error("create the CA key"))?;
        shoal_store::secrets::write_private_file(&ca_key_path, &key.serialize_pem())?;
        // A CA certificate left from an earlier key would not match it.
        let _ = std::fs::remove_file(&ca_path);
        key
    };
    let ca_params = ca_params()?;
    let ca_pem = if ca_path.exists() {
        read_text(&ca_path)?
    } else {
        let ca = ca_params
            .self_signed(&ca_key)
            .map_err(rcgen_error("sign the CA certificate"))?;
        write_file(&ca_path, &ca.pem())?;
        ca.pem()
    };
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
        HubError::Config(format!(
            "{} is not a PEM certificate: {e}",
            ca_path.display()
        ))
    })?;

    let mut sans = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Some(host) = host_name() {
        sans.push(host);
    }
    for san in extra_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    let mut params = CertificateParams::new(sans.clone())
        .map_err(|e| HubError::Config(format!("--tls-san: {e} (in {})", sans.join(", "))))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "shoal-hub");
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    params.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate().map_err(rcgen_error("create the server key"))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server = params
        .signed_by(&server_key, &issuer)
        .map_err(rcgen_error("sign the server certificate"))?;
    write_file(
        &dir.join("server.pem"),
        &format!("{}{}", server.pem(), ca_pem),
    )?;
    replace_private_file(&dir.join("server.key"), &server_key.serialize_pem())?;
    Ok(HubTls {
        chain: vec![server.der().clone(), ca_der],
        key: PrivateKeyDer::from(server_key),
        ca_pem,
        ca_path: Some(ca_path),
    })
}

/// The CA's parameters. They are the same at every start, so the CA can sign again from its
/// key alone (an issuer needs its name, key identifier method, key usages and key).
fn ca_params() -> HubResult<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(rcgen_error("describe the CA certificate"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed, not derived from the current year: the CA is signed again from these at every
    // start and its name and key usages must not change.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    Ok(params)
}

/// The current year (near enough: certificates start a year early).
fn this_year() -> i32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (now / 31_556_952) as i32
}

fn from_files(cert: &Path, key: &Path, ca: Option<&Path>) -> HubResult<HubTls> {
    let chain = shoal_proto::tls::parse_certificates(&read_text(cert)?)
        .map_err(|e| HubError::Config(format!("--tls-cert {}: {e}", cert.display())))?;
    let key_der = PrivateKeyDer::from_pem_slice(read_text(key)?.as_bytes()).map_err(|e| {
        HubError::Config(format!(
            "--tls-key {}: not a PEM private key: {e}",
            key.display()
        ))
    })?;
    let (ca_pem, ca_path) = match ca {
        Some(path) => {
            let text = read_text(path)?;
            shoal_proto::tls::parse_certificates(&text)
                .map_err(|e| HubError::Config(format!("--tls-ca {}: {e}", path.display())))?;
            (text, Some(path.to_path_buf()))
        }
        None => {
            let top = chain
                .last()
                .expect("parse_certificates returns at least one");
            (pem_of(top), None)
        }
    };
    let tls = HubTls {
        chain,
        key: key_der,
        ca_pem,
        ca_path,
    };
    // Refuse a key that does not match now, not at the first connection.
    tls.acceptor(&[])?;
    Ok(tls)
}

fn pem_of(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/etc/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.len() <= 253).then(|| name.to_string())
}

fn read_text(path: &Path) -> HubResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| HubError::Config(format!("cannot read {}: {e}", path.display())))
}

fn write_file(path: &Path, text: &str) -> HubResult<()> {
    Ok(std::fs::write(path, text).map_err(IoError::with(format!("write {}", path.display())))?)
}

/// Writes a mode-0600 file next to `path` and renames it over `path`.
fn replace_private_file(path: &Path, text: &str) -> HubResult<()> {
    let staged = path.with_extension("key.new");
    let _ = std::fs::remove_file(&staged);
    shoal_store::secrets::write_private_file(&staged, text)?;
    std::fs::rename(&staged, path).map_err(IoError::with(format!("replace {}", path.display())))?;
    Ok(())
}

fn rcgen_error(what: &'static str) -> impl Fn(rcgen::Error) -> HubError {
    move |e| HubError::Internal(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let source = TlsSource::Generated {
            extra_sans: vec!["hub.example".into()],
        };
        let first = HubTls::load(dir.path(), &source).unwrap();
        let second = HubTls::load(dir.path(), &source).unwrap();
        assert_eq!(first.ca_pem(), second.ca_pem(), "the CA survives restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(shoal_proto::tls::client_config(Some(first.ca_pem())).is_ok());
        assert!(first.acceptor(&[ALPN_GRPC]).is_ok());
    }

    #[test]
    fn operator_files_that_do_not_parse_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let error = HubTls::load(
            dir.path(),
            &TlsSource::Files {
                cert: cert.clone(),
                key: dir.path().join("missing.key"),
                ca: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("--tls-cert"), "{error}");
    }
}
