//! Signed manifests: checking that the hub really chose this model for this device.
//!
//! A manifest is trusted only through [`VerifiedManifest::verify`]: the ed25519 signature over
//! the exact bytes the hub signed, then the decoded fields (workspace, digest shape, size). The
//! digest becomes a file name in the data directory, so its shape is checked here, once.

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;
use shoal_proto::device::{ActiveModel, Manifest, SignedManifest};
use thiserror::Error;

/// Why a manifest is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest signature is {0} bytes, expected 64")]
    SignatureLength(usize),
    #[error("manifest signature does not verify against the hub key")]
    SignatureMismatch,
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("manifest is for workspace '{got}', this device is in '{expected}'")]
    WrongWorkspace { expected: String, got: String },
    #[error("manifest digest '{0}' is not 64 lowercase hex characters")]
    BadDigest(String),
    #[error("manifest says the model is 0 bytes")]
    EmptyModel,
}

/// A manifest whose signature verified against the hub key and whose fields were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    /// The decoded manifest.
    pub manifest: Manifest,
    /// The exact signed bytes, kept to write to `state.json` and re-verify at boot.
    pub signed: SignedManifest,
}

impl VerifiedManifest {
    /// Verifies the signature over `signed.manifest` with the hub's key, then decodes and checks
    /// the manifest.
    ///
    /// # Errors
    /// `SignatureLength`/`SignatureMismatch` when the hub key did not sign these bytes,
    /// `Malformed` when they do not decode, `WrongWorkspace`, `BadDigest` or `EmptyModel` for a
    /// manifest this device must not use.
    pub fn verify(
        signed: &SignedManifest,
        hub_key: &VerifyingKey,
        workspace: &str,
    ) -> Result<VerifiedManifest, ManifestError> {
        let signature = Signature::from_slice(&signed.signature)
            .map_err(|_| ManifestError::SignatureLength(signed.signature.len()))?;
        hub_key
            .verify_strict(&signed.manifest, &signature)
            .map_err(|_| ManifestError::SignatureMismatch)?;
        let manifest = Manifest::decode(signed.manifest.as_slice())
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if manifest.workspace != workspace {
            return Err(ManifestError::WrongWorkspace {
                expected: workspace.to_string(),
                got: manifest.workspace,
            });
        }
        if !is_digest(&manifest.digest) {
            return Err(ManifestError::BadDigest(manifest.digest));
        }
        if manifest.size_bytes == 0 {
            return Err(ManifestError::EmptyModel);
        }
        Ok(VerifiedManifest {
            manifest,
            signed: signed.clone(),
        })
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The short form used in reported state.
    pub fn active_model(&self) -> ActiveModel {
        ActiveModel {
            model: self.manifest.model.clone(),
            version: self.manifest.version,
            digest: self.manifest.digest.clone(),
        }
    }
}

/// Whether `text` is a sha256 digest as Shoal writes them: 64 lowercase hex characters.
pub fn is_digest(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    pub(crate) fn hub_key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    pub(crate) fn manifest(workspace: &str, digest: &str, size: u64) -> Manifest {
        Manifest {
            workspace: workspace.into(),
            model: "iris".into(),
            version: 3,
            digest: digest.into(),
            size_bytes: size,
            signature: None,
            created_at_ms: 1,
            ..Default::default()
        }
    }

    pub(crate) fn sign(key: &SigningKey, manifest: &Manifest) -> SignedManifest {
        let bytes = manifest.encode_to_vec();
        let signature = key.sign(&bytes).to_bytes().to_vec();
        SignedManifest {
            manifest: bytes,
            signature,
        }
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_a_manifest_signed_by_the_hub() {
        let key = hub_key();
        let signed = sign(&key, &manifest("default", DIGEST, 10));
        let verified = VerifiedManifest::verify(&signed, &key.verifying_key(), "default").unwrap();
        assert_eq!(verified.digest(), DIGEST);
        assert_eq!(verified.active_model().version, 3);
    }

    #[test]
    fn refuses_a_manifest_signed_by_another_key() {
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let signed = sign(&other, &manifest("default", DIGEST, 10));
        let error =
            VerifiedManifest::verify(&signed, &hub_key().verifying_key(), "default").unwrap_err();
        assert_eq!(error, ManifestError::SignatureMismatch);
        assert_eq!(
            error.to_string(),
            "manifest signature does not verify against the hub key"
        );
    }

    #[test]
    fn refuses_tampered_bytes_and_short_signatures() {
        let key = hub_key();
        let mut signed = sign(&key, &manifest("default", DIGEST, 10));
        let last = signed.manifest.len() - 1;
        signed.manifest[last] ^= 1;
        let error = VerifiedManifest::verify(&signed, &key.verifying_key(), "default").unwrap_err();
        assert_eq!(error, ManifestError::SignatureMismatch);

        signed.signature.truncate(10);
        let error = VerifiedManifest::verify(&signed, &key.verifying_key(), "default").unwrap_err();
        assert_eq!(error, ManifestError::SignatureLength(10));
    }

    #[test]
    fn refuses_signed_manifests_this_device_must_not_use() {
        let key = hub_key();
        let verify = |m: Manifest| {
            VerifiedManifest::verify(&sign(&key, &m), &key.verifying_key(), "default")
        };
        assert!(matches!(
            verify(manifest("other", DIGEST, 10)),
            Err(ManifestError::WrongWorkspace { .. })
        ));
        assert!(matches!(
            verify(manifest("default", "../../etc/passwd", 10)),
            Err(ManifestError::BadDigest(_))
        ));
        assert!(matches!(
            verify(manifest("default", &DIGEST.to_uppercase(), 10)),
            Err(ManifestError::BadDigest(_))
        ));
        assert_eq!(
            verify(manifest("default", DIGEST, 0)),
            Err(ManifestError::EmptyModel)
        );
    }
}
