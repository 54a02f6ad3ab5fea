//! Device passwords: issued once at enrollment, kept only as a salted hash.

use base64::Engine;
use sha2::{Digest, Sha512};
use shoal_store::secrets::{constant_time_eq, random_bytes, random_hex, sha256};
use shoal_store::RandomSourceError;

/// A new device password, and what the hub keeps of it.
pub struct DevicePassword {
    pub password: String,
    pub salt: String,
    pub hash: String,
    /// The same password in Mosquitto's password-file format, for [`mosquitto_hash`].
    pub mosquitto_hash: String,
}

impl DevicePassword {
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> Result<DevicePassword, RandomSourceError> {
        let password = random_hex(24)?;
        let salt = random_hex(8)?;
        let hash = password_hash(&salt, &password);
        let mosquitto_hash = mosquitto_hash(&password)?;
        Ok(DevicePassword {
            password,
            salt,
            hash,
            mosquitto_hash,
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

/// Iterations Mosquitto's own `mosquitto_passwd` uses (2.0).
pub const MOSQUITTO_ITERATIONS: u32 = 101;
const MOSQUITTO_SALT_BYTES: usize = 12;
const SHA512_BLOCK: usize = 128;
const SHA512_OUT: usize = 64;

/// `password` in Mosquitto's password-file format: `$7$iterations$salt$hash`, PBKDF2-HMAC-SHA512
/// with a random 12-byte salt and a 64-byte key, both base64, as `mosquitto_passwd` writes it.
///
/// A salted sha256 cannot be turned into this, so the hub computes it once, when it issues a
/// password and still holds it, and stores it next to its own hash.
///
/// # Errors
/// When the system's random source fails.
pub fn mosquitto_hash(password: &str) -> Result<String, RandomSourceError> {
    let salt: [u8; MOSQUITTO_SALT_BYTES] = random_bytes()?;
    Ok(mosquitto_hash_with(password, &salt, MOSQUITTO_ITERATIONS))
}

/// [`mosquitto_hash`] with a given salt and iteration count.
pub fn mosquitto_hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let key = pbkdf2_sha512(password.as_bytes(), salt, iterations);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$7${iterations}${}${}", b64.encode(salt), b64.encode(key))
}

/// PBKDF2 (RFC 8018) with HMAC-SHA512, one 64-byte block: all Mosquitto asks for.
fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; SHA512_OUT] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha512(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha512(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// HMAC (RFC 2104) over SHA-512.
fn hmac_sha512(key: &[u8], message: &[u8]) -> [u8; SHA512_OUT] {
    let mut block = [0u8; SHA512_BLOCK];
    if key.len() > SHA512_BLOCK {
        block[..SHA512_OUT].copy_from_slice(&Sha512::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha512::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha512::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_hashes_match_mosquitto_passwd() {
        // Written by `mosquitto_passwd -b pw user1 secretpw` (Mosquitto 2.0.11).
        let expected = "$7$101$Yz0eoMiJoc7LtpkI$xShOYPfDjli83H28ncEMPzvnlugskAnxq7SlNnV4h+ydxsKVyk3pp4CHaPkKxrtgxUq4ADT7QB05SNiJoSw9mg==";
        let salt = base64::engine::general_purpose::STANDARD
            .decode("Yz0eoMiJoc7LtpkI")
            .unwrap();
        assert_eq!(mosquitto_hash_with("secretpw", &salt, 101), expected);
    }

    #[test]
    fn hmac_sha512_matches_rfc_4231() {
        // RFC 4231 test case 2 (a key shorter than the block) and 6 (a key longer than it).
        assert_eq!(
            hex::encode(hmac_sha512(b"Jefe", b"what do ya want for nothing?")),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        assert_eq!(
            hex::encode(hmac_sha512(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
        );
    }

    #[test]
    fn new_passwords_carry_a_mosquitto_hash_with_a_fresh_salt() {
        let p = DevicePassword::generate().unwrap();
        let q = DevicePassword::generate().unwrap();
        assert!(
            p.mosquitto_hash.starts_with("$7$101$"),
            "{}",
            p.mosquitto_hash
        );
        assert_ne!(p.mosquitto_hash, q.mosquitto_hash);
        let parts: Vec<&str> = p.mosquitto_hash.split('$').collect();
        let salt = base64::engine::general_purpose::STANDARD
            .decode(parts[3])
            .unwrap();
        assert_eq!(salt.len(), 12);
        assert_eq!(
            mosquitto_hash_with(&p.password, &salt, 101),
            p.mosquitto_hash
        );
    }

    #[test]
    fn device_passwords_verify() {
        let p = DevicePassword::generate().unwrap();
        assert!(verify_password(&p.salt, &p.hash, &p.password));
        assert!(!verify_password(&p.salt, &p.hash, "guess"));
    }
}
