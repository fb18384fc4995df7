//! Reading what arrives in the bounce mailbox: delivery status notifications (RFC 3464,
//! `multipart/report; report-type=delivery-status`), feedback reports (ARF, RFC 5965,
//! `report-type=feedback-report`), and the common bounces that follow no standard (a
//! MAILER-DAEMON's prose with a status code in it). MIME is parsed by mail-parser; the
//! `message/delivery-status` and `message/feedback-report` bodies are blocks of header
//! fields, read here. Anything else is no report: the caller flags it and moves on.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::bounces::BounceKind;
use super::classify;

/// What one report says about one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: BounceKind,
    /// The address the report is about, when it names one.
    pub recipient: Option<String>,
    /// The status and the server's words, as the report gives them.
    pub diagnostic: Option<String>,
}

/// A report read from a mail.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The Message-IDs of the original message it returns or quotes (its headers part).
    pub original_message_ids: Vec<String>,
}

/// Reads a mail; Err says why it is no bounce or feedback report.
pub fn read(raw: &[u8]) -> Result<Report, String> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| "not a mail (no headers)".to_owned())?;
    let report_type = message
        .content_type()
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    let mut report = Report {
        original_message_ids: original_message_ids(&message),
        ..Report::default()
    };
    match report_type.as_deref() {
        Some("delivery-status") => {
            let status = part_of_type(&message, &["delivery-status", "global-delivery-status"])
                .ok_or_else(|| "a delivery-status report without its message/delivery-status part".to_owned())?;
            report.findings = delivery_status(&status);
        }
        Some("feedback-report") => {
            let fields = part_of_type(&message, &["feedback-report"])
                .ok_or_else(|| "a feedback report without its message/feedback-report part".to_owned())?;
            let fields = field_blocks(&fields).into_iter().flatten().collect::<Vec<_>>();
            let feedback_type = field(&fields, "feedback-type").unwrap_or_default().to_ascii_lowercase();
            if feedback_type == "not-spam" {
                return Ok(report);
            }
            report.findings.push(Finding {
                kind: BounceKind::Complaint,
                recipient: field(&fields, "original-rcpt-to").map(address_of),
                diagnostic: Some(format!("feedback report: {feedback_type}")),
            });
        }
        _ => {
            report.findings = prose_bounce(&message)?;
        }
    }
    Ok(report)
}

/// The decoded body of the first part whose type is `message/<one of subtypes>` (or
/// `text/<subtype>`, which some servers send).
fn part_of_type(message: &Message<'_>, subtypes: &[&str]) -> Option<String> {
    message.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        let subtype = ct.subtype()?.to_ascii_lowercase();
        (matches!(ct.ctype().to_ascii_lowercase().as_str(), "message" | "text") && subtypes.contains(&subtype.as_str()))
            .then(|| String::from_utf8_lossy(part.contents()).into_owned())
    })
}

/// Blocks of `Name: value` fields separated by blank lines (folded lines joined).
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !blocks.last().is_some_and(Vec::is_empty) {
                blocks.push(Vec::new());
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = blocks.last_mut().and_then(|b| b.last_mut()) {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            blocks
                .last_mut()
                .expect("never empty")
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `rfc822; a@b` -> `a@b`.
fn address_of(value: &str) -> String {
    let value = value.split_once(';').map_or(value, |(_, a)| a);
    value.trim().trim_matches(['<', '>']).to_owned()
}

/// The per-recipient blocks of a `message/delivery-status` body: failed (by its status) and
/// delayed (SOFT) recipients; delivered, relayed and expanded ones say nothing against
/// the address.
fn delivery_status(body: &str) -> Vec<Finding> {
    field_blocks(body)
        .into_iter()
        .filter_map(|fields| {
            let recipient = field(&fields, "final-recipient").or_else(|| field(&fields, "original-recipient"))?;
            let action = field(&fields, "action").unwrap_or("failed").to_ascii_lowercase();
            let status = field(&fields, "status").unwrap_or_default();
            let code = classify::enhanced_code(status);
            let kind = match action.as_str() {
                "failed" => code.and_then(|(c, s, d)| classify::of_status(c, s, d)),
                "delayed" => Some(BounceKind::Soft),
                _ => None,
            }?;
            let diagnostic = match field(&fields, "diagnostic-code") {
                Some(diag) => format!("{status} {}", diag.split_once(';').map_or(diag, |(_, d)| d.trim())),
                None => status.to_owned(),
            };
            Some(Finding {
                kind,
                recipient: Some(address_of(recipient)),
                diagnostic: Some(diagnostic.trim().to_owned()),
            })
        })
        .collect()
}

/// Words in the subject of a bounce that follows no standard.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "delivery status notification",
    "delivery failure",
    "failure notice",
    "returned mail",
    "mail delivery failed",
    "delivery has failed",
    "could not be delivered",
];

/// A bounce in prose: from a MAILER-DAEMON or postmaster, or with a bounce's subject, and
/// a status code or the words for an unknown user in its text.
fn prose_bounce(message: &Message<'_>) -> Result<Vec<Finding>, String> {
    let from = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
    let from_daemon = from.starts_with("mailer-daemon@") || from.starts_with("postmaster@");
    if !from_daemon && !BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return Err("neither a report nor a bounce (no MAILER-DAEMON sender, no bounce subject)".to_owned());
    }
    let text: String = message
        .text_bodies()
        .filter_map(|part| part.text_contents())
        .collect::<Vec<_>>()
        .join("\n");
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| {
            classify::enhanced_code(line).is_some_and(|(class, _, _)| class != 2)
                || classify::of_rejection(line, false).is_some()
        })
        .ok_or_else(|| "a bounce without a status code or a reason we know".to_owned())?;
    let kind = match classify::enhanced_code(line) {
        Some((class, subject, detail)) => classify::of_status(class, subject, detail),
        None => classify::of_rejection(line, false),
    };
    Ok(kind
        .map(|kind| Finding {
            kind,
            recipient: None,
            diagnostic: Some(line.chars().take(300).collect()),
        })
        .into_iter()
        .collect())
}

/// Message-IDs of the original message: a `message/rfc822` part, a
/// `message/rfc822-headers` (or `text/rfc822-headers`) part.
fn original_message_ids(message: &Message<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    for part in message.parts.iter().skip(1) {
        match &part.body {
            PartType::Message(original) => ids.extend(original.message_id().map(str::to_owned)),
            _ if is_headers_part(part) => {
                if let Some(headers) = MessageParser::default().parse(part.contents()) {
                    ids.extend(headers.message_id().map(str::to_owned));
                }
            }
            _ => {}
        }
    }
    ids
}

fn is_headers_part(part: &MessagePart<'_>) -> bool {
    part.content_type()
        .and_then(|ct| ct.subtype())
        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(content_type: &str, parts: &[(&str, &str)]) -> Vec<u8> {
        let mut mail = format!(
            "From: MAILER-DAEMON@mx.example\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}; boundary=\"b\"\r\n\r\n"
        );
        for (ctype, body) in parts {
            mail.push_str(&format!("--b\r\nContent-Type: {ctype}\r\n\r\n{body}\r\n"));
        }
        mail.push_str("--b--\r\n");
        mail.into_bytes()
    }

    #[test]
    fn delivery_status_notifications_name_each_recipient() {
        let raw = report(
            "multipart/report; report-type=delivery-status",
            &[
                ("text/plain", "Your message could not be delivered."),
                (
                    "message/delivery-status",
                    "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; gone@acme.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                     Diagnostic-Code: smtp; 550 5.1.1 no such\r\n  user\r\n\r\nFinal-Recipient: rfc822;<full@acme.com>\r\nAction: delayed\r\n\
                     Status: 4.2.2\r\n\r\nFinal-Recipient: rfc822; spam@acme.com\r\nAction: failed\r\nStatus: 5.7.1\r\n\r\n\
                     Final-Recipient: rfc822; ok@acme.com\r\nAction: delivered\r\nStatus: 2.0.0",
                ),
                (
                    "text/rfc822-headers",
                    "From: news@acme.example\r\nMessage-ID: <abc@acme.example>\r\n",
                ),
            ],
        );
        let dsn = read(&raw).unwrap();
        assert_eq!(
            dsn.findings,
            vec![
                Finding {
                    kind: BounceKind::Hard,
                    recipient: Some("gone@acme.com".into()),
                    diagnostic: Some("5.1.1 550 5.1.1 no such user".into()),
                },
                Finding {
                    kind: BounceKind::Soft,
                    recipient: Some("full@acme.com".into()),
                    diagnostic: Some("4.2.2".into()),
                },
            ],
            "a policy block and a delivery say nothing against the address"
        );
        assert_eq!(dsn.original_message_ids, vec!["abc@acme.example".to_owned()]);
    }

    #[test]
    fn feedback_reports_are_complaints_unless_not_spam() {
        let arf = |kind: &str| {
            report(
                "multipart/report; report-type=feedback-report",
                &[
                    ("text/plain", "An abuse report."),
                    (
                        "message/feedback-report",
                        &format!("Feedback-Type: {kind}\r\nVersion: 1\r\nOriginal-Rcpt-To: <b@acme.com>"),
                    ),
                    (
                        "message/rfc822",
                        "From: news@acme.example\r\nMessage-ID: <id@acme.example>\r\n\r\nHi\r\n",
                    ),
                ],
            )
        };
        let complaint = read(&arf("abuse")).unwrap();
        assert_eq!(complaint.findings[0].kind, BounceKind::Complaint);
        assert_eq!(complaint.findings[0].recipient.as_deref(), Some("b@acme.com"));
        assert_eq!(complaint.original_message_ids, vec!["id@acme.example".to_owned()]);
        assert!(read(&arf("not-spam")).unwrap().findings.is_empty());
    }

    #[test]
    fn prose_bounces_are_read_and_anything_else_is_no_report() {
        let prose =
            b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n\r\nSorry.\r\n\r\n<gone@acme.com>:\r\n\
            550-5.1.1 The email account that you tried to reach does not exist.\r\n";
        let read_prose = read(prose).unwrap();
        assert_eq!(read_prose.findings.len(), 1);
        assert_eq!(read_prose.findings[0].kind, BounceKind::Hard);
        assert!(read(b"From: friend@example.org\r\nSubject: lunch\r\n\r\nNoon?\r\n").is_err());
        assert!(read(b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n\r\nSomething.\r\n").is_err());
        assert!(read(b"").is_err());
        assert!(read(&[0xff; 100]).is_err());
        let no_parts = report("multipart/report; report-type=delivery-status", &[("text/plain", "hi")]);
        assert!(read(&no_parts).is_err());
    }
}
