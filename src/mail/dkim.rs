//! DKIM signing (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519) of the finished bytes.
//! Written here rather than through lettre's `dkim` feature: lettre signs its `Message`
//! before formatting and never sees the MIME part's own Content-Type, so a signature that
//! covers Content-Type (as RFC 8058 and the mailbox providers ask) does not verify. The
//! key is read from a PEM file when the configuration is parsed (RSA as PKCS#1 or PKCS#8,
//! Ed25519 as PKCS#8), so a bad key stops start-up naming DKIM_PRIVATE_KEY.

use base64::Engine;
use std::sync::Arc;

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

/// The header fields every signature covers (one that a mail lacks is signed as absent).
pub const SIGNED_HEADERS: [&str; 10] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    // Gmail reads the feedback loop's ids only from a signed header.
    "Feedback-ID",
];

/// A private key as read from its file, with the public half for DNS.
#[derive(Clone)]
pub struct DkimKey {
    key: Key,
    /// `k=rsa; p=...` or `k=ed25519; p=...`.
    public: String,
}

#[derive(Clone)]
enum Key {
    /// Signed by ring (the constant-time assembly rustls already uses): 2.6 times faster than
    /// the `rsa` crate here (README, DKIM), which reads the key and signs those ring does not
    /// take (under 2048 bits).
    Rsa(Box<rsa::RsaPrivateKey>, Option<Arc<ring::signature::RsaKeyPair>>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// Reads a PEM private key; says what is wrong with it otherwise.
    pub fn from_pem(pem: &str) -> Result<DkimKey, String> {
        let base64 = base64::engine::general_purpose::STANDARD;
        let rsa = if pem.contains("BEGIN RSA PRIVATE KEY") {
            Some(rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| format!("not an RSA key in PKCS#1 PEM: {e}"))?)
        } else {
            rsa::RsaPrivateKey::from_pkcs8_pem(pem).ok()
        };
        if let Some(key) = rsa {
            let bits = key.size() * 8;
            if bits < 1024 {
                return Err(format!("an RSA key of {bits} bits is too short (use 2048)"));
            }
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| format!("the RSA public key cannot be encoded: {e}"))?;
            let fast = key
                .to_pkcs1_der()
                .ok()
                .and_then(|der| ring::signature::RsaKeyPair::from_der(der.as_bytes()).ok())
                .map(Arc::new);
            return Ok(DkimKey {
                public: format!("k=rsa; p={}", base64.encode(public.as_bytes())),
                key: Key::Rsa(Box::new(key), fast),
            });
        }
        let key = <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem)
            .map_err(|_| "not a PEM private key of RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8)".to_owned())?;
        Ok(DkimKey {
            public: format!("k=ed25519; p={}", base64.encode(key.verifying_key().to_bytes())),
            key: Key::Ed25519(Box::new(key)),
        })
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn txt_record(&self) -> String {
        format!("v=DKIM1; {}", self.public)
    }
}

/// Signs mails for one domain and selector.
pub struct Signer {
    domain: String,
    selector: String,
    key: DkimKey,
}

impl Signer {
    pub fn new(domain: &str, selector: &str, key: &DkimKey) -> Signer {
        Signer {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            key: key.clone(),
        }
    }

    /// `raw` (CRLF line ends, headers then a blank line then the body) with a
    /// DKIM-Signature header in front.
    pub fn sign(&self, raw: &[u8]) -> Vec<u8> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |at| at + 2);
        let (head, body) = raw.split_at(split);
        let body = body.strip_prefix(b"\r\n").unwrap_or(body);
        let base64 = base64::engine::general_purpose::STANDARD;
        let body_hash = base64.encode(Sha256::digest(relaxed_body(body)));
        let signed: Vec<String> = SIGNED_HEADERS.iter().map(|h| h.to_ascii_lowercase()).collect();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let algorithm = match self.key.key {
            Key::Rsa(..) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        };
        let unsigned = format!(
            "v=1; a={algorithm}; c=relaxed/relaxed; d={}; s={}; t={timestamp}; h={}; bh={body_hash}; b=",
            self.domain,
            self.selector,
            signed.join(":"),
        );
        let fields = header_fields(head);
        let mut data = Vec::new();
        for name in &signed {
            // The bottom-most field of each name (RFC 6376 5.4.2); one the mail lacks adds nothing.
            if let Some((field, value)) = fields.iter().rev().find(|(field, _)| field.eq_ignore_ascii_case(name)) {
                data.extend_from_slice(relaxed_header(field, value).as_bytes());
                data.extend_from_slice(b"\r\n");
            }
        }
        data.extend_from_slice(relaxed_header("DKIM-Signature", &unsigned).as_bytes());
        let signature = match &self.key.key {
            // ring hashes the data itself (SHA-256) and pads as PKCS#1 v1.5 does.
            Key::Rsa(_, Some(fast)) => {
                let mut signature = vec![0; fast.public().modulus_len()];
                fast.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    &data,
                    &mut signature,
                )
                .expect("ring signs with a key it accepted");
                signature
            }
            Key::Rsa(key, None) => key
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&data))
                .expect("an RSA key of at least 1024 bits signs a SHA-256 digest"),
            // RFC 8463: Ed25519 signs the SHA-256 hash of the data.
            Key::Ed25519(key) => ed25519_dalek::Signer::sign(key.as_ref(), &Sha256::digest(&data))
                .to_bytes()
                .to_vec(),
        };
        // b= folded into lines of 72 (whitespace in it is ignored), the rest on one line.
        let b = base64.encode(signature);
        let folded: Vec<&str> = b
            .as_bytes()
            .chunks(72)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let mut out = format!("DKIM-Signature: {unsigned}{}\r\n", folded.join("\r\n ")).into_bytes();
        out.extend_from_slice(raw);
        out
    }
}

/// The header block as (name, value) pairs, folded lines joined (their CRLF kept).
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str("\r\n");
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    fields
}

/// RFC 6376 3.4.2: name lower-cased, value unfolded, runs of white space one space, none
/// at either end.
fn relaxed_header(name: &str, value: &str) -> String {
    let value = value.replace("\r\n", "");
    let value = value
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{}:{}", name.trim().to_ascii_lowercase(), value)
}

/// RFC 6376 3.4.4: white space at line ends removed, runs of it one space, empty lines at
/// the end removed; a body that is not empty ends with one CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            let mut space = false;
            for c in line.chars() {
                if c == ' ' || c == '\t' {
                    space = true;
                } else {
                    if space {
                        out.push(' ');
                        space = false;
                    }
                    out.push(c);
                }
            }
            out
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n");
    out
}

/// The DNS records an operator publishes for mail from `from_domain` (as listmonk and Postal
/// document them): the DKIM key when one is configured (`(domain, selector, key)`), an SPF
/// hint naming the relay when there is one, and a DMARC policy to start with.
pub fn dns_records(from_domain: &str, relay: Option<&str>, dkim: Option<(&str, &str, &DkimKey)>) -> String {
    let mut out = format!("; DNS records for mail from {from_domain}\n\n");
    match dkim {
        Some((domain, selector, key)) => {
            // A TXT string holds at most 255 bytes: a long key is split into several.
            let record = key.txt_record();
            let strings: Vec<String> = record
                .as_bytes()
                .chunks(250)
                .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
                .collect();
            out.push_str(&format!(
                "; DKIM: the public half of DKIM_PRIVATE_KEY\n{selector}._domainkey.{domain}. IN TXT ( {} )\n\n",
                strings.join(" ")
            ));
            if domain != from_domain && !from_domain.ends_with(&format!(".{domain}")) {
                out.push_str(&format!(
                    "; note: DKIM_DOMAIN {domain} is not MAIL_FROM's domain {from_domain}: DMARC needs them aligned\n\n"
                ));
            }
        }
        None => out.push_str("; DKIM: not configured (set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY)\n\n"),
    }
    let sender = relay.map_or_else(|| "mx".to_owned(), |host| format!("a:{host} mx"));
    out.push_str(&format!(
        "; SPF: the hosts that may send as {from_domain} (your relay's own include: if it documents one)\n\
         {from_domain}. IN TXT \"v=spf1 {sender} ~all\"\n\n\
         ; DMARC: start by watching (p=none) and tighten to quarantine or reject once reports show alignment\n\
         _dmarc.{from_domain}. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}; adkim=r; aspf=r\"\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_follows_rfc_6376() {
        // RFC 6376 3.4.5's example.
        assert_eq!(relaxed_header("A", " X"), "a:X");
        assert_eq!(relaxed_header("B ", " Y\t\r\n\tZ  "), "b:Y Z");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
    }

    #[test]
    fn keys_that_are_not_keys_are_refused_with_a_reason() {
        for pem in [
            "",
            "hello",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            assert!(DkimKey::from_pem(pem).is_err(), "{pem:?}");
        }
    }
}
