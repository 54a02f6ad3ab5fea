//! Device passwords: issued once at enrollment, kept only as a salted hash.

use shoal_store::secrets::{constant_time_eq, random_hex, sha256};
use shoal_store::RandomSourceError;

/// A new device password, and what the hub keeps of it.
pub struct DevicePassword {
    pub password: String,
    pub salt: String,
    pub hash: String,
}

impl DevicePassword {
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> Result<DevicePassword, RandomSourceError> {
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

/// Whether `password` is the one whose salted hash is `hash`, compared in constant time.
pub fn verify_password(salt: &str, hash: &str, password: &str) -> bool {
    constant_time_eq(password_hash(salt, password).as_bytes(), hash.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_passwords_verify() {
        let p = DevicePassword::generate().unwrap();
        assert!(verify_password(&p.salt, &p.hash, &p.password));
        assert!(!verify_password(&p.salt, &p.hash, "guess"));
    }
}
