//! Sealing what must not be readable from a database dump (SMTP credentials, DKIM keys):
//! ChaCha20-Poly1305 from ring (already our DKIM signer) under CREDENTIALS_KEY, a random
//! nonce per value, stored as `sealed:<base64(nonce || ciphertext || tag)>`. The text's
//! column name is bound in as associated data, so a sealed value cannot be moved to
//! another column and opened there.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:";

/// CREDENTIALS_KEY: 32 bytes.
#[derive(Clone)]
pub struct SealingKey([u8; 32]);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// 64 hex digits or the base64 of 32 bytes (`openssl rand -hex 32`).
    pub fn parse(s: &str) -> Result<SealingKey, String> {
        let s = s.trim();
        let bytes = hex::decode(s)
            .ok()
            .or_else(|| STANDARD.decode(s).ok())
            .ok_or("write 32 random bytes as 64 hex digits or base64 (openssl rand -hex 32)")?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{} bytes; the key must be 32 (openssl rand -hex 32)", b.len()))?;
        Ok(SealingKey(bytes))
    }

    fn key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32 bytes is the key length"))
    }

    /// `plain` sealed for the column `what`.
    pub fn seal(&self, what: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut data = plain.as_bytes().to_vec();
        self.key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(what.as_bytes()),
                &mut data,
            )
            .expect("sealing a value under the size limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// The plain text of a value `seal` made for `what`; an error when it was sealed under
    /// another key or changed.
    pub fn open(&self, what: &str, sealed: &str) -> Result<String, String> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|raw| raw.len() > NONCE_LEN)
            .ok_or("not a sealed value")?;
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "not a sealed value")?;
        let mut data = data.to_vec();
        let plain = self
            .key()
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut data)
            .map_err(|_| "sealed under another CREDENTIALS_KEY, or changed")?;
        String::from_utf8(plain.to_vec()).map_err(|_| "not UTF-8 once opened".to_owned())
    }
}

/// Whether a stored value is sealed (otherwise it is stored as it is).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_under_the_same_key_and_column() {
        let key = SealingKey::parse(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("url", "smtp://user:secret@relay.example");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("secret"));
        assert_ne!(
            sealed,
            key.seal("url", "smtp://user:secret@relay.example"),
            "a nonce per value"
        );
        assert_eq!(key.open("url", &sealed).unwrap(), "smtp://user:secret@relay.example");
        assert!(key.open("dkim_key", &sealed).is_err());
        let other = SealingKey::parse(&"cd".repeat(32)).unwrap();
        assert!(other.open("url", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.replace_range(20..21, if &sealed[20..21] == "A" { "B" } else { "A" });
        assert!(key.open("url", &tampered).is_err());
        assert!(key.open("url", "sealed:").is_err());
        assert!(SealingKey::parse("short").is_err());
        assert!(SealingKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
    }
}
