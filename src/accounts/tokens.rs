//! Secrets handed to users, from the operating system's CSPRNG, shown once and stored only
//! as their SHA-256: session tokens (256 bits) and tokens in mailed links (128 bits, in
//! base64url so that a link stays one short, readable line of a plain-text mail).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    bytes
}

/// A session token and the hash to store for it.
pub fn new_session_token() -> (String, Vec<u8>) {
    let token = URL_SAFE_NO_PAD.encode(random::<32>());
    let hash = hash_token(&token);
    (token, hash)
}

/// A token for a mailed link (verification, password reset) and the hash to store.
pub fn new_link_token() -> (String, Vec<u8>) {
    let token = URL_SAFE_NO_PAD.encode(random::<16>());
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a) = new_session_token();
        let (b, _) = new_session_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(hash_a, hash_token(&a));
        let (link, _) = new_link_token();
        assert_eq!(link.len(), 22, "128 bits");
        assert!(link.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
