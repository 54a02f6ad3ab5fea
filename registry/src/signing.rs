//! The hub's signing key: every desired state a device receives is signed with it, and its
//! public half goes into every agent config.
//!
//! What is signed is an encoded `DesiredBody` (workspace, device, deployment, a revision that
//! only grows, the model's manifest) behind `shoal_proto::device::DESIRED_STATE_DOMAIN`, so a signature
//! made for one purpose can never be read as another, and a device can refuse a desired state
//! addressed to another device or older than one it already accepted.
//!
//! The key is created on first start as `signing.key` (hex, mode 0600) in the hub's data
//! folder and read back on later starts.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use shoal_proto::device::{desired_state_signed_bytes, DesiredBody, DesiredState};
use shoal_store::secrets::{random_bytes, write_private_file};
use shoal_store::IoError;

use crate::error::{RegistryError, RegistryResult};

pub const SIGNING_KEY_FILE: &str = "signing.key";

/// Signs desired states with the hub's ed25519 key.
pub struct ManifestSigner {
    signing: SigningKey,
}

impl ManifestSigner {
    /// Reads the key from `data_dir`, creating it on first start.
    ///
    /// # Errors
    /// I/O errors naming the file, or a key file that is not what the hub wrote.
    pub fn load_or_create(data_dir: &Path) -> RegistryResult<ManifestSigner> {
        let key_path = data_dir.join(SIGNING_KEY_FILE);
        let signing = match std::fs::read_to_string(&key_path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        RegistryError::Internal(format!(
                            "{} is not a 32-byte hex key",
                            key_path.display()
                        ))
                    })?;
                SigningKey::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed = random_bytes::<32>()?;
                write_private_file(&key_path, &hex::encode(seed))?;
                tracing::info!(path = %key_path.display(), "wrote a new manifest signing key");
                SigningKey::from_bytes(&seed)
            }
            Err(e) => {
                return Err(IoError::with(format!("read {}", key_path.display()))(e).into());
            }
        };
        Ok(ManifestSigner { signing })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.verifying_key().to_bytes())
    }

    /// Encodes and signs a desired state; devices verify the signature over the domain prefix
    /// and these exact body bytes.
    pub fn sign_desired(&self, body: &DesiredBody) -> DesiredState {
        let body = body.encode_to_vec();
        let signature = self.signing.sign(&desired_state_signed_bytes(&body));
        DesiredState {
            body,
            signature: signature.to_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ManifestSigner::load_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = ManifestSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_key_hex(), signer.public_key_hex());
        let signed = signer.sign_desired(&DesiredBody {
            device: "cam-1".into(),
            revision: 7,
            ..Default::default()
        });
        let signature = ed25519_dalek::Signature::from_slice(&signed.signature).unwrap();
        let verifying = signer.verifying_key();
        assert!(verifying
            .verify_strict(&desired_state_signed_bytes(&signed.body), &signature)
            .is_ok());
        // The bare body (no domain prefix) does not verify: the signature is for desired
        // states only.
        assert!(verifying.verify_strict(&signed.body, &signature).is_err());
        assert_eq!(
            DesiredBody::decode(signed.body.as_slice())
                .unwrap()
                .revision,
            7
        );
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), "not hex").unwrap();
        let error = ManifestSigner::load_or_create(dir.path())
            .err()
            .expect("a damaged key is refused");
        assert!(error.to_string().contains(SIGNING_KEY_FILE), "{error}");
    }
}
