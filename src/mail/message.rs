//! Building a mail that is always valid on the wire, whatever the values in it.
//!
//! Every text that ends up in a mail went through the input rules (`crate::validate`),
//! except what was stored before them; so this module does not trust them either:
//! display names and subjects lose their control characters, bodies (text and HTML parts) get `\n` line ends
//! and lose the control characters other than `\n` and `\t`, the subject is folded or
//! RFC 2047-encoded to stay within RFC 5322's line lengths (lettre writes printable ASCII
//! as it comes, however long the word), and the finished bytes are checked: CRLF line ends
//! only, header lines of at most 998 bytes, MAX_MESSAGE_SIZE in all. A mail that fails a
//! check is an error for that one delivery, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::address::Address;

/// RFC 5322 2.1.1: a line is at most 998 octets (without CRLF) and should be at most 78.
const MAX_LINE: usize = 998;
const FOLD_AT: usize = 78;
/// Longest display name put into a header (a client's name is at most 200 characters).
const MAX_DISPLAY_NAME: usize = 200;

/// `<delivery-id@domain of MAIL_FROM>`: the same on every retry of a delivery, so a rare
/// duplicate is traceable.
pub fn message_id(delivery_id: uuid::Uuid, mail_from: &Mailbox) -> String {
    format!("<{delivery_id}@{}>", mail_from.email.domain())
}

/// A mail ready for a transport: its envelope and its bytes as they go on the wire.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub envelope: Envelope,
    pub raw: Vec<u8>,
    /// The envelope has a non-ASCII local part: only a server offering SMTPUTF8 takes it.
    pub smtputf8: bool,
}

/// What a mail is made of.
pub struct Draft<'a> {
    pub from: &'a Mailbox,
    pub to: &'a Address,
    pub to_name: Option<&'a str>,
    pub subject: &'a str,
    /// The text/plain part (the whole mail when there is no HTML).
    pub body: &'a str,
    /// The text/html part: the mail is then multipart/alternative, text first (RFC 2046
    /// 5.1.4: the richest part last).
    pub html: Option<&'a str>,
    pub message_id: Option<String>,
    /// Further header fields; their values must be printable ASCII (links, tokens).
    pub headers: Vec<(&'static str, String)>,
    /// Signs the mail when DKIM is configured.
    pub dkim: Option<&'a super::dkim::Signer>,
}

/// Builds the mail, or says why it cannot go out.
pub fn build(draft: &Draft<'_>, max_size: usize) -> Result<Outgoing, String> {
    // A rough bound first, so a huge body is refused before it is copied and encoded
    // (base64 grows it by a third).
    let parts_len = draft.body.len() + draft.html.map_or(0, str::len);
    if parts_len / 3 * 4 > max_size {
        return Err(too_large(parts_len / 3 * 4, max_size));
    }
    let to = Mailbox::new(display_name(draft.to_name), draft.to.lettre()?);
    let mut builder = lettre::Message::builder()
        .from(draft.from.clone())
        .to(to)
        .message_id(draft.message_id.clone())
        .date_now()
        .raw_header(subject_header(draft.subject));
    for (name, value) in &draft.headers {
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) || value.len() > MAX_LINE - name.len() - 2 {
            return Err(format!("the {name} header is not printable ASCII of at most 998 bytes"));
        }
        builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value.clone()));
    }
    let message = match draft.html {
        None => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body_text(draft.body)),
        ),
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            body_text(draft.body),
            body_text(html),
        )),
    }
    .map_err(|e| format!("the message cannot be built: {e}"))?;
    let raw = match draft.dkim {
        Some(signer) => signer.sign(&message.formatted()),
        None => message.formatted(),
    };
    check_wire(&raw, max_size)?;
    Ok(Outgoing {
        envelope: message.envelope().clone(),
        smtputf8: draft.to.needs_smtputf8() || !draft.from.email.to_string().is_ascii(),
        raw,
    })
}

fn too_large(size: usize, max: usize) -> String {
    format!("the message would be {size} bytes, more than MAX_MESSAGE_SIZE ({max} bytes)")
}

/// A display name for a header: one line, no control characters, at most 200 characters;
/// none when nothing is left.
pub fn display_name(name: Option<&str>) -> Option<String> {
    let name = one_line(name?);
    let name: String = name.chars().take(MAX_DISPLAY_NAME).collect();
    (!name.is_empty()).then_some(name)
}

/// Control characters and line breaks become spaces; runs of white space one space.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `\n` line ends (CRLF and lone CR become `\n`); control characters other than `\n` and
/// `\t` removed. lettre then writes CRLF and picks 7bit, quoted-printable or base64.
pub fn body_text(text: &str) -> String {
    normalise_line_ends(text)
        .chars()
        .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
        .collect()
}

/// CRLF and lone CR become LF.
pub fn normalise_line_ends(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The Subject field, folded: printable ASCII words as they are where each fits a line,
/// otherwise the whole text as RFC 2047 encoded words (UTF-8, base64) of at most 75
/// characters, one per line. Either way no line passes 78 characters.
pub fn subject_header(subject: &str) -> HeaderValue {
    let (subject, encoded) = encode_subject(subject);
    HeaderValue::dangerous_new_pre_encoded(HeaderName::new_from_ascii_str("Subject"), subject, encoded)
}

/// The subject made one line, and its folded or encoded form.
fn encode_subject(subject: &str) -> (String, String) {
    let subject = one_line(subject);
    let name = "Subject";
    let plain = subject.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !subject.contains("=?")
        && subject.split(' ').all(|w| w.len() <= FOLD_AT - name.len() - 3);
    let encoded = if plain {
        fold_words(name.len() + 2, &subject)
    } else {
        encoded_words(name.len() + 2, &subject)
    };
    (subject, encoded)
}

/// Words joined by spaces, a line break before the space where the next word would pass 78.
fn fold_words(start: usize, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut line = start;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            if line + 1 + word.len() > FOLD_AT {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

/// `=?utf-8?b?...?=` words, each cut at a character boundary, folded one per line.
fn encoded_words(start: usize, text: &str) -> String {
    // An encoded word is at most 75 characters (RFC 2047 2): 12 of framing and at most
    // 60 of base64, 45 bytes of text; the first also shares its line with "Subject: ".
    const FRAMING: usize = "=?utf-8?b??=".len();
    let mut out = String::new();
    let mut rest = text;
    let mut taken = start;
    while !rest.is_empty() {
        let room = ((FOLD_AT - taken - FRAMING) / 4 * 3).min(45);
        let mut end = rest.len().min(room);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // A character wider than the room (never with 45 bytes: UTF-8 is at most 4).
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        if !out.is_empty() {
            out.push_str("\r\n ");
        }
        out.push_str("=?utf-8?b?");
        out.push_str(&STANDARD.encode(&rest.as_bytes()[..end]));
        out.push_str("?=");
        rest = &rest[end..];
        taken = 1;
    }
    out
}

/// What no mail of ours may have on the wire: a bare CR or LF (SMTP smuggling, header
/// injection), a header line over 998 bytes, more than `max_size` bytes.
pub fn check_wire(raw: &[u8], max_size: usize) -> Result<(), String> {
    if raw.len() > max_size {
        return Err(too_large(raw.len(), max_size));
    }
    let mut line_start = 0;
    for (i, &byte) in raw.iter().enumerate() {
        match byte {
            b'\r' if raw.get(i + 1) != Some(&b'\n') => return Err(format!("a bare CR at byte {i}")),
            b'\n' if i == 0 || raw[i - 1] != b'\r' => return Err(format!("a bare LF at byte {i}")),
            b'\n' => {
                let len = i - 1 - line_start;
                if len > MAX_LINE {
                    return Err(format!("a line of {len} bytes at byte {line_start}"));
                }
                line_start = i + 1;
            }
            0 => return Err(format!("a NUL byte at byte {i}")),
            _ => {}
        }
    }
    if raw.len() - line_start > MAX_LINE {
        return Err("the last line is longer than 998 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fold_or_encode_within_78() {
        assert_eq!(
            encode_subject(" Hello  there "),
            ("Hello there".into(), "Hello there".into())
        );
        for subject in [
            "word ".repeat(300),
            "x".repeat(998),
            "Привет ".repeat(100),
            "=?utf-8?b?Zm9v?= looks encoded".into(),
            "a\r\nBcc: victim@example.com".into(),
            "bell\u{7} esc\u{1b}[31m del\u{7f}".into(),
        ] {
            let line = format!("Subject: {}", encode_subject(&subject).1);
            for l in line.split("\r\n") {
                assert!(l.len() <= 78, "{l:?}");
                assert!(l.bytes().all(|b| (0x20..0x7f).contains(&b)), "{l:?}");
            }
            assert!(!line.contains("\r\nBcc"), "{line}");
        }
    }

    #[test]
    fn the_wire_check_finds_what_must_not_go_out() {
        assert!(check_wire(b"A: b\r\n\r\nbody\r\n", 100).is_ok());
        assert!(
            check_wire(b"A: b\r\n\r\nbo\rdy\r\n", 100)
                .unwrap_err()
                .contains("bare CR")
        );
        assert!(
            check_wire(b"A: b\r\n\r\nbo\ndy\r\n", 100)
                .unwrap_err()
                .contains("bare LF")
        );
        assert!(
            check_wire(b"A: b\r\n\r\nbody\r\n", 10)
                .unwrap_err()
                .contains("MAX_MESSAGE_SIZE")
        );
        let long = format!("A: {}\r\n\r\n", "b".repeat(999));
        assert!(check_wire(long.as_bytes(), 10_000).is_err());
    }

    #[test]
    fn names_and_bodies_lose_their_control_characters() {
        assert_eq!(
            display_name(Some(" Ann\r\nBcc: x \u{1b} ")).as_deref(),
            Some("Ann Bcc: x")
        );
        assert_eq!(display_name(Some("\r\n")), None);
        assert_eq!(body_text("a\r\nb\rc\u{0}d\u{1b}e\tf\n"), "a\nb\ncde\tf\n");
    }
}
