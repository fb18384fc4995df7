//! E-mail addresses: the one parser for every address the service takes in (clients,
//! accounts, test sends, CSV) and sends to.
//!
//! The grammar is `email_address`'s (RFC 5321/5322, the parser lettre itself uses); on top,
//! only what every mail server can be sent: a dot-atom local part (no quoted local parts),
//! a host name (no `[1.2.3.4]` literals), RFC 5321's lengths. An internationalised domain is
//! kept as typed and sent as its A-label (`münchen.de` -> `xn--mnchen-3ya.de`), which needs
//! nothing of the server; a non-ASCII local part needs SMTPUTF8, which the SMTP client asks
//! for only where the server offers it (see `mail::smtp`).

use email_address::{EmailAddress, Options};

/// RFC 5321 4.5.3.1: local part, domain and whole path limits, in octets.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
pub const MAX_ADDRESS: usize = 254;

/// A deliverable address: as typed, and as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// As typed (trimmed): what users see and the database keeps.
    pub text: String,
    /// The local part, as typed.
    pub local: String,
    /// The domain as an A-label (ASCII), lower case.
    pub ascii_domain: String,
}

impl Address {
    /// `local@a-label`: what goes into the envelope and the headers.
    pub fn wire(&self) -> String {
        format!("{}@{}", self.local, self.ascii_domain)
    }

    /// The address as lettre's type (for the envelope and headers).
    pub fn lettre(&self) -> Result<lettre::Address, String> {
        lettre::Address::new(&self.local, &self.ascii_domain)
            .map_err(|e| format!("`{}` is not a deliverable address: {e}", self.text))
    }

    /// Whether the local part has non-ASCII characters (RFC 6531: needs SMTPUTF8).
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii()
    }
}

/// Parses an address; the error says what is wrong in words a user can act on.
pub fn parse(text: &str) -> Result<Address, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("enter an e-mail address".into());
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("an e-mail address has no spaces or control characters".into());
    }
    if text.len() > 4 * MAX_ADDRESS {
        return Err(format!("is longer than {MAX_ADDRESS} characters"));
    }
    // What the grammar allows but no transport of ours sends, said plainly.
    if let Some((local, domain)) = text.rsplit_once('@') {
        if local.starts_with('"') {
            return Err(format!("`{text}`: quoted local parts (\"...\"@) are not supported"));
        }
        if domain.starts_with('[') {
            return Err(format!("`{text}`: address literals (@[...]) are not supported"));
        }
    }
    let options = Options::default().without_display_text().without_domain_literal();
    let parsed = EmailAddress::parse_with_options(text, options)
        .map_err(|e| format!("`{text}` is not a valid e-mail address ({e})"))?;
    let (local, domain) = (parsed.local_part(), parsed.domain());
    if local.len() > MAX_LOCAL {
        return Err(format!("the part before @ is longer than {MAX_LOCAL} characters"));
    }
    let ascii_domain =
        idna::domain_to_ascii_strict(domain).map_err(|_| format!("`{domain}` is not a valid domain name"))?;
    if ascii_domain.is_empty()
        || ascii_domain.len() > MAX_DOMAIN
        || ascii_domain
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-'))
    {
        return Err(format!("`{domain}` is not a valid domain name"));
    }
    let address = Address {
        text: text.to_owned(),
        local: local.to_owned(),
        ascii_domain,
    };
    if address.wire().len() > MAX_ADDRESS {
        return Err(format!("is longer than {MAX_ADDRESS} characters"));
    }
    // What lettre will not put into an envelope is no address for us either.
    address.lettre()?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_but_valid_addresses_are_taken() {
        for ok in [
            "ann@example.com",
            "Ann.Lee+news@sub.example.co.uk",
            "o'brien@example.ie",
            "x@localhost",
            "user_name-1@e-x.io",
            "!#$%&'*+/=?^_`{|}~@example.com",
        ] {
            assert_eq!(parse(ok).map(|a| a.text), Ok(ok.to_owned()), "{ok}");
        }
        let idn = parse("ann@münchen.de").unwrap();
        assert_eq!(idn.text, "ann@münchen.de");
        assert_eq!(idn.wire(), "ann@xn--mnchen-3ya.de");
        assert!(!idn.needs_smtputf8());
        let eai = parse("анна@пример.рф").unwrap();
        assert_eq!(eai.wire(), "анна@xn--e1afmkfd.xn--p1ai");
        assert!(eai.needs_smtputf8());
        assert_eq!(parse("  a@b.io ").unwrap().text, "a@b.io");
    }

    #[test]
    fn what_no_transport_takes_is_refused_with_a_reason() {
        for (bad, says) in [
            ("", "enter"),
            ("no-at-sign", "not a valid"),
            ("\"quoted\"@example.com", "quoted"),
            ("a@[127.0.0.1]", "literals"),
            ("a@[IPv6:::1]", "literals"),
            ("a b@example.com", "spaces"),
            ("a\r\n@example.com", "control"),
            ("a\0@example.com", "control"),
            ("a..b@example.com", "not a valid"),
            ("a@-example.com", "not a valid"),
            ("a@example..com", "not a valid"),
            ("Ann <a@example.com>", "spaces"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(parse(&format!("a@{}.com", "b".repeat(64))).is_err());
        let long_domain = vec!["d".repeat(60); 5].join(".");
        assert!(parse(&format!("a@{long_domain}")).is_err());
    }
}
