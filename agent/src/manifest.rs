//! Signed desired states: checking that the hub really chose this model for this device, now.
//!
//! A desired state is trusted only through [`VerifiedDesired::verify`]: the ed25519 signature
//! over the domain prefix and the exact body bytes the hub signed, then the decoded fields:
//! the workspace and device it is addressed to, and the manifest's digest shapes and size.
//! Digests become file names in the data directory, so their shape is checked here, once.
//! Whether its revision is new enough is the updater's call (it keeps the highest one).

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use shoal_proto::device::{
    desired_state_signed_bytes, ActiveModel, BlobRef, DesiredBody, DesiredState, Manifest,
};
use thiserror::Error;

/// Why a desired state is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("desired state signature is {0} bytes, expected 64")]
    SignatureLength(usize),
    #[error("desired state signature does not verify against the hub key")]
    SignatureMismatch,
    #[error("malformed desired state: {0}")]
    Malformed(String),
    #[error("desired state is for workspace '{got}', this device is in '{expected}'")]
    WrongWorkspace { expected: String, got: String },
    #[error("desired state is addressed to device '{got}', this device is '{expected}'")]
    WrongDevice { expected: String, got: String },
    #[error("manifest digest '{0}' is not 64 lowercase hex characters")]
    BadDigest(String),
    #[error("manifest says the model is 0 bytes")]
    EmptyModel,
    #[error("the desired state names no model")]
    NoModel,
}

/// A desired state whose signature verified against the hub key and which is addressed to
/// this device.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDesired {
    pub revision: u64,
    pub deployment: String,
    /// sha256 of the signed body: an identical re-publish of a revision has the same one.
    pub body_sha256: String,
    /// The model to run; `None`: keep what is served.
    pub model: Option<VerifiedManifest>,
}

/// A manifest from a verified desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    /// The decoded manifest.
    pub manifest: Manifest,
    /// The exact signed desired state it came in, kept to write to `state.json` and
    /// re-verify at boot.
    pub signed: DesiredState,
}

impl VerifiedDesired {
    /// Verifies the signature over the domain prefix and `state.body` with the hub's key, then
    /// decodes the body and checks that it is addressed to this workspace and device.
    ///
    /// # Errors
    /// `SignatureLength`/`SignatureMismatch` when the hub key did not sign these bytes,
    /// `Malformed` when they do not decode, `WrongWorkspace`, `WrongDevice`, `BadDigest` or
    /// `EmptyModel` for a desired state this device must not use.
    pub fn verify(
        state: &DesiredState,
        hub_key: &VerifyingKey,
        workspace: &str,
        device: &str,
    ) -> Result<VerifiedDesired, ManifestError> {
        let signature = Signature::from_slice(&state.signature)
            .map_err(|_| ManifestError::SignatureLength(state.signature.len()))?;
        hub_key
            .verify_strict(&desired_state_signed_bytes(&state.body), &signature)
            .map_err(|_| ManifestError::SignatureMismatch)?;
        let body = DesiredBody::decode(state.body.as_slice())
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if body.workspace != workspace {
            return Err(ManifestError::WrongWorkspace {
                expected: workspace.to_string(),
                got: body.workspace,
            });
        }
        if body.device != device {
            return Err(ManifestError::WrongDevice {
                expected: device.to_string(),
                got: body.device,
            });
        }
        let model = match body.model {
            None => None,
            Some(manifest) => {
                check_manifest(&manifest, workspace)?;
                Some(VerifiedManifest {
                    manifest,
                    signed: state.clone(),
                })
            }
        };
        Ok(VerifiedDesired {
            revision: body.revision,
            deployment: body.deployment,
            body_sha256: hex::encode(Sha256::digest(&state.body)),
            model,
        })
    }
}

fn check_manifest(manifest: &Manifest, workspace: &str) -> Result<(), ManifestError> {
    if manifest.workspace != workspace {
        return Err(ManifestError::WrongWorkspace {
            expected: workspace.to_string(),
            got: manifest.workspace.clone(),
        });
    }
    if !is_digest(&manifest.digest) {
        return Err(ManifestError::BadDigest(manifest.digest.clone()));
    }
    if manifest.size_bytes == 0 {
        return Err(ManifestError::EmptyModel);
    }
    if let Some(baseline) = &manifest.baseline {
        if !is_digest(&baseline.digest) {
            return Err(ManifestError::BadDigest(baseline.digest.clone()));
        }
    }
    Ok(())
}

impl VerifiedManifest {
    /// Verifies a stored desired state (see [`VerifiedDesired::verify`]) that must name a
    /// model: what `state.json` keeps of the active and previous models.
    ///
    /// # Errors
    /// As [`VerifiedDesired::verify`], and `NoModel`.
    pub fn verify(
        signed: &DesiredState,
        hub_key: &VerifyingKey,
        workspace: &str,
        device: &str,
    ) -> Result<VerifiedManifest, ManifestError> {
        VerifiedDesired::verify(signed, hub_key, workspace, device)?
            .model
            .ok_or(ManifestError::NoModel)
    }

    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The drift baseline blob the manifest refers to, if any.
    pub fn baseline(&self) -> Option<&BlobRef> {
        self.manifest.baseline.as_ref()
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

    pub(crate) const DEVICE: &str = "cam-01";

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

    pub(crate) fn body(manifest: &Manifest, revision: u64) -> DesiredBody {
        DesiredBody {
            workspace: manifest.workspace.clone(),
            device: DEVICE.into(),
            deployment: "d".into(),
            revision,
            model: Some(manifest.clone()),
        }
    }

    pub(crate) fn sign_body(key: &SigningKey, body: &DesiredBody) -> DesiredState {
        let body = body.encode_to_vec();
        let signature = key
            .sign(&desired_state_signed_bytes(&body))
            .to_bytes()
            .to_vec();
        DesiredState { body, signature }
    }

    /// A desired state for [`DEVICE`] at revision 1 carrying `manifest`.
    pub(crate) fn sign(key: &SigningKey, manifest: &Manifest) -> DesiredState {
        sign_body(key, &body(manifest, 1))
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn verify(state: &DesiredState) -> Result<VerifiedDesired, ManifestError> {
        VerifiedDesired::verify(state, &hub_key().verifying_key(), "default", DEVICE)
    }

    #[test]
    fn accepts_a_desired_state_signed_by_the_hub_for_this_device() {
        let key = hub_key();
        let verified =
            verify(&sign_body(&key, &body(&manifest("default", DIGEST, 10), 9))).unwrap();
        assert_eq!(verified.revision, 9);
        let model = verified.model.unwrap();
        assert_eq!(model.digest(), DIGEST);
        assert_eq!(model.active_model().version, 3);
    }

    #[test]
    fn refuses_a_desired_state_signed_by_another_key() {
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let error = verify(&sign(&other, &manifest("default", DIGEST, 10))).unwrap_err();
        assert_eq!(error, ManifestError::SignatureMismatch);
        assert_eq!(
            error.to_string(),
            "desired state signature does not verify against the hub key"
        );
    }

    #[test]
    fn refuses_tampered_bytes_short_signatures_and_a_signature_without_the_domain() {
        let key = hub_key();
        let mut signed = sign(&key, &manifest("default", DIGEST, 10));
        let last = signed.body.len() - 1;
        signed.body[last] ^= 1;
        assert_eq!(
            verify(&signed).unwrap_err(),
            ManifestError::SignatureMismatch
        );

        signed.signature.truncate(10);
        assert_eq!(
            verify(&signed).unwrap_err(),
            ManifestError::SignatureLength(10)
        );

        // The hub's key over the bare body (no domain prefix) is not a desired state.
        let body = body(&manifest("default", DIGEST, 10), 1).encode_to_vec();
        let bare = DesiredState {
            signature: key.sign(&body).to_bytes().to_vec(),
            body,
        };
        assert_eq!(verify(&bare).unwrap_err(), ManifestError::SignatureMismatch);
    }

    #[test]
    fn refuses_signed_desired_states_this_device_must_not_use() {
        let key = hub_key();
        let verify_manifest = |m: Manifest| verify(&sign(&key, &m));
        assert!(matches!(
            verify_manifest(manifest("other", DIGEST, 10)),
            Err(ManifestError::WrongWorkspace { .. })
        ));
        assert!(matches!(
            verify_manifest(manifest("default", "../../etc/passwd", 10)),
            Err(ManifestError::BadDigest(_))
        ));
        assert!(matches!(
            verify_manifest(manifest("default", &DIGEST.to_uppercase(), 10)),
            Err(ManifestError::BadDigest(_))
        ));
        let mut bad_baseline = manifest("default", DIGEST, 10);
        bad_baseline.baseline = Some(BlobRef {
            digest: "../x".into(),
            size_bytes: 3,
        });
        assert!(matches!(
            verify_manifest(bad_baseline),
            Err(ManifestError::BadDigest(_))
        ));
        assert_eq!(
            verify_manifest(manifest("default", DIGEST, 0)),
            Err(ManifestError::EmptyModel)
        );
        // Signed for another device of the same hub.
        let mut elsewhere = body(&manifest("default", DIGEST, 10), 1);
        elsewhere.device = "cam-02".into();
        assert_eq!(
            verify(&sign_body(&key, &elsewhere)).unwrap_err(),
            ManifestError::WrongDevice {
                expected: DEVICE.into(),
                got: "cam-02".into()
            }
        );
    }
}
