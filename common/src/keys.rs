//! WireGuard keys, byte-for-byte compatible with `wg genkey`, `wg pubkey` and `wg genpsk`.
//!
//! Secrets ([`PrivateKey`], [`PresharedKey`]) are zeroized on drop and never show their value
//! through `Debug` or `Display`: the only way to get the base64 text is [`PrivateKey::expose_base64`],
//! so every place that writes a secret is greppable.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{what} is not valid base64 (a WireGuard key is 44 characters ending in '=', as `wg genkey` prints)")]
    Base64 { what: &'static str },
    #[error("{what} decodes to {len} bytes, a WireGuard key has 32 (as `wg genkey` prints)")]
    Length { what: &'static str, len: usize },
    #[error("the system random source failed: {0}")]
    Random(String),
}

fn decode(what: &'static str, text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::Base64 { what })?,
    );
    let len = bytes.len();
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length { what, len })
}

fn random_bytes() -> Result<[u8; KEY_LEN], KeyError> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A Curve25519 private key. Generated keys are clamped exactly like `wg genkey` output.
#[derive(Clone)]
pub struct PrivateKey(Zeroizing<[u8; KEY_LEN]>);

impl PrivateKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = random_bytes()?;
        // Clamping as in RFC 7748 (and `wg genkey`): the key the file holds is the key that is used.
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Ok(Self(Zeroizing::new(bytes)))
    }

    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(*self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    /// The base64 text of the key, for writing it to a file the user asked for.
    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }

    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Zeroizing::new(decode("private key", s)?)))
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.public_key() == other.public_key()
    }
}
impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(*** public {})", self.public_key())
    }
}

impl fmt::Display for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

/// A symmetric preshared key (`wg genpsk`): 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey(Zeroizing<[u8; KEY_LEN]>);

impl PresharedKey {
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self(Zeroizing::new(random_bytes()?)))
    }

    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }

    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(Zeroizing::new(decode("preshared key", s)?)))
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(***)")
    }
}

impl fmt::Display for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

/// A public key; not secret, printed in full.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(decode("public key", s)?))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Secrets in config files are serialized as base64 on purpose (the file is 0600); Debug stays masked.
impl Serialize for PrivateKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose_base64())
    }
}

impl<'de> Deserialize<'de> for PrivateKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for PresharedKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose_base64())
    }
}

impl<'de> Deserialize<'de> for PresharedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 section 6.1 test vector (Alice).
    const ALICE_PRIVATE_HEX: &str =
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC_HEX: &str =
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("test hex");
        }
        out
    }

    #[test]
    fn public_key_matches_rfc7748_vector() {
        let private: PrivateKey = STANDARD
            .encode(hex(ALICE_PRIVATE_HEX))
            .parse()
            .expect("key");
        assert_eq!(private.public_key().as_bytes(), &hex(ALICE_PUBLIC_HEX));
    }

    #[test]
    fn generated_keys_are_clamped_and_round_trip() {
        let key = PrivateKey::generate().expect("random");
        let bytes = key.expose_bytes();
        assert_eq!(bytes[0] & 7, 0);
        assert_eq!(bytes[31] & 128, 0);
        assert_eq!(bytes[31] & 64, 64);
        let again: PrivateKey = key.expose_base64().parse().expect("parse");
        assert_eq!(again.expose_bytes(), key.expose_bytes());
        assert_eq!(key.expose_base64().len(), 44);
    }

    #[test]
    fn secrets_never_print() {
        let key = PrivateKey::generate().expect("random");
        let psk = PresharedKey::generate().expect("random");
        let b64 = key.expose_base64().to_string();
        let psk64 = psk.expose_base64().to_string();
        for shown in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{psk:?}"),
            format!("{psk}"),
        ] {
            assert!(!shown.contains(&b64) && !shown.contains(&psk64), "{shown}");
        }
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert_eq!(
            "abc".parse::<PublicKey>(),
            Err(KeyError::Base64 { what: "public key" })
        );
        assert_eq!(
            "AAAA".parse::<PublicKey>(),
            Err(KeyError::Length {
                what: "public key",
                len: 3
            })
        );
    }
}
