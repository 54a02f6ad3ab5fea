//! The hub's secrets: its admin API token, its manifest signing key, and device passwords.
//!
//! On first start the hub writes `admin.token` and `signing.key` (both mode 0600) into its
//! data folder; later starts read them back. Only hashes of tokens and device passwords are
//! compared, in constant time.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use shoal_proto::device::{Manifest, SignedManifest};

use crate::error::{HubError, HubResult};

pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// The keys a hub holds.
pub struct HubKeys {
    /// Signs every manifest devices receive; its public half goes into agent configs.
    signing: SigningKey,
    /// sha256 of the admin bearer token; the token itself stays in `admin.token`.
    admin_token_hash: [u8; 32],
}

impl HubKeys {
    /// Reads the keys from `data_dir`, creating them on first start.
    ///
    /// # Errors
    /// I/O errors, or a key file that is not what the hub wrote.
    pub fn load_or_create(data_dir: &Path) -> HubResult<HubKeys> {
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = format!("shoal_{}", random_hex(24)?);
                write_secret(&token_path, &token)?;
                tracing::info!(path = %token_path.display(), "wrote a new admin token");
                token
            }
            Err(e) => return Err(e.into()),
        };
        if token.is_empty() {
            return Err(HubError::Internal(format!(
                "{} is empty",
                token_path.display()
            )));
        }
        let key_path = data_dir.join(SIGNING_KEY_FILE);
        let signing = match std::fs::read_to_string(&key_path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        HubError::Internal(format!(
                            "{} is not a 32-byte hex key",
                            key_path.display()
                        ))
                    })?;
                SigningKey::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed).map_err(|e| HubError::Internal(e.to_string()))?;
                write_secret(&key_path, &hex::encode(seed))?;
                tracing::info!(path = %key_path.display(), "wrote a new manifest signing key");
                SigningKey::from_bytes(&seed)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(HubKeys {
            signing,
            admin_token_hash: sha256(token.as_bytes()),
        })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.verifying_key().to_bytes())
    }

    /// Whether `token` is the admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        constant_time_eq(&sha256(token.as_bytes()), &self.admin_token_hash)
    }

    /// Encodes and signs a manifest; devices verify the signature over these exact bytes.
    pub fn sign_manifest(&self, manifest: &Manifest) -> SignedManifest {
        let bytes = manifest.encode_to_vec();
        let signature = self.signing.sign(&bytes);
        SignedManifest {
            manifest: bytes,
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// A new device password, and what the hub keeps of it.
pub struct DevicePassword {
    pub password: String,
    pub salt: String,
    pub hash: String,
}

impl DevicePassword {
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> HubResult<DevicePassword> {
        let password = random_hex(24)?;
        let salt = random_hex(8)?;
        let hash = password_hash(&salt, &password);
        Ok(DevicePassword {
            password,
            salt,
            hash,
        })
    }
}

/// The stored form of a device password. Passwords are 192 random bits, so a salted sha256
/// is enough; a slow KDF would only slow down every broker connection.
pub fn password_hash(salt: &str, password: &str) -> String {
    hex::encode(sha256(format!("{salt}:{password}").as_bytes()))
}

pub fn verify_password(salt: &str, hash: &str, password: &str) -> bool {
    constant_time_eq(password_hash(salt, password).as_bytes(), hash.as_bytes())
}

/// Random bytes as lowercase hex.
///
/// # Errors
/// When the system's random source fails.
pub fn random_hex(bytes: usize) -> HubResult<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| HubError::Internal(format!("random source: {e}")))?;
    Ok(hex::encode(buf))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_secret(path: &Path, contents: &str) -> HubResult<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let keys = HubKeys::load_or_create(dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert!(keys.is_admin_token(token.trim()));
        assert!(!keys.is_admin_token("shoal_wrong"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = HubKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_key_hex(), keys.public_key_hex());
        let signed = keys.sign_manifest(&Manifest {
            model: "m".into(),
            ..Default::default()
        });
        let signature = ed25519_dalek::Signature::from_slice(&signed.signature).unwrap();
        assert!(keys
            .verifying_key()
            .verify_strict(&signed.manifest, &signature)
            .is_ok());
    }

    #[test]
    fn device_passwords_verify() {
        let p = DevicePassword::generate().unwrap();
        assert!(verify_password(&p.salt, &p.hash, &p.password));
        assert!(!verify_password(&p.salt, &p.hash, "guess"));
    }
}
