//! Composing is total: whatever the values, the composer returns a mail an independent MIME
//! parser (mail-parser) reads back with the same headers, the same values, CRLF line ends
//! only and lines within RFC 5322's limits; or it says why that delivery cannot go out.
//! Values are generated (proptest), hostile ones on purpose: control characters, line
//! breaks, placeholders inside values, long words, non-ASCII, odd but valid addresses.

use lettre::message::Mailbox;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use mailwarm::config::Config;
use mailwarm::db::types::{ClientId, DeliveryId};
use mailwarm::dispatch::compose::RunMessage;
use mailwarm::dispatch::compose::{Recipient, Sender, compose};
use mailwarm::mail::message::{body_text, one_line};
use mailwarm::messages::model::MessageFormat;
use mailwarm::messages::template::{Content, MessageTemplates};
use proptest::prelude::*;

const MAX: usize = 10 * 1024 * 1024;

/// Text made of the pieces that broke things: line breaks, NUL, ESC, BEL, DEL, Unicode
/// breaks, placeholders, dots at line starts, quotes, non-ASCII, long words.
fn hostile_text(max_pieces: usize) -> impl Strategy<Value = String> {
    hostile_pieces(max_pieces).prop_map(|pieces| pieces.concat())
}

/// The variables of the first version, the ones `hostile_pieces` holds.
const VARIABLES: [&str; 3] = ["{{full_name}}", "{{email}}", "{{unsubscribe_url}}"];

/// A template that says `pieces`: the variables as variables, everything else as literal
/// text (in `{% raw %}` blocks), so hostile text reaches the mail as it is.
fn template_of(pieces: &[String]) -> String {
    pieces
        .iter()
        .map(|piece| {
            if VARIABLES.contains(&piece.as_str()) {
                piece.clone()
            } else {
                format!("{{% raw %}}{piece}{{% endraw %}}")
            }
        })
        .collect()
}

/// What `template_of(pieces)` renders to with these values.
fn filled(pieces: &[String], name: &str, email: &str, unsubscribe: &str) -> String {
    pieces
        .iter()
        .map(|piece| match piece.as_str() {
            "{{full_name}}" => name,
            "{{email}}" => email,
            "{{unsubscribe_url}}" => unsubscribe,
            literal => literal,
        })
        .collect()
}

/// A TEXT message's templates.
fn text(subject: &str, body: &str) -> MessageTemplates {
    MessageTemplates::compile(&Content {
        format: MessageFormat::Text,
        subject,
        body,
        text_body: None,
        layout: None,
    })
    .unwrap()
}

fn sender(from: &Mailbox) -> Sender<'_> {
    Sender {
        from,
        bounce: None,
        feedback_sender: "mailwarm",
        reply_to: None,
        dkim: None,
        max_size: MAX,
    }
}

fn message(templates: &MessageTemplates) -> RunMessage<'_> {
    RunMessage {
        templates,
        mailing_id: mailwarm::db::types::MailingId::new_random(),
        owner_id: mailwarm::db::types::UserId::new_random(),
        date: "2030-01-31".into(),
    }
}

fn hostile_pieces(max_pieces: usize) -> impl Strategy<Value = Vec<String>> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\r.\r\n".to_owned()),
        Just("\n.\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{1b}[31m".to_owned()),
        Just("\u{7}\u{7f}\u{8}".to_owned()),
        Just("\t".to_owned()),
        Just("\u{2028}\u{85}".to_owned()),
        Just("{{full_name}}".to_owned()),
        Just("{{email}}".to_owned()),
        Just("{{unsubscribe_url}}".to_owned()),
        Just("{{".to_owned()),
        Just("=?utf-8?b?QmNjOiB4?=".to_owned()),
        Just("Bcc: victim@example.com".to_owned()),
        Just("\"quoted\" <a@b.c>, ".to_owned()),
        Just("Привет, мир ".to_owned()),
        Just("😀 ".to_owned()),
        Just(" ".to_owned()),
        "[a-z]{1,12}",
        "[a-zA-Z0-9]{60,1200}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..max_pieces)
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ann@example.com".to_owned()),
        Just("o'brien+tag@sub.example.co.uk".to_owned()),
        Just("ann@münchen.de".to_owned()),
        Just("анна@пример.рф".to_owned()),
        Just("x@localhost".to_owned()),
        "[a-z0-9+_-]{1,10}(\\.[a-z0-9+_-]{1,10})?@[a-z]{1,10}\\.[a-z]{2,4}",
    ]
}

fn header_names(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .map(|line| line.split(':').next().unwrap_or_default().to_ascii_lowercase())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_values_make_a_well_formed_mail(
        name in hostile_text(12),
        subject in hostile_pieces(12),
        body in hostile_pieces(40),
        email in address(),
    ) {
        // Raw blocks cannot hold their own end tag; nothing else is out of bounds.
        prop_assume!(!subject.iter().chain(&body).any(|piece| piece.contains("endraw")));
        let config = Config::from_args(["server"]).unwrap();
        let from: Mailbox = "Acme News <news@example.com>".parse().unwrap();
        let key = [7u8; 32];
        let attributes = serde_json::json!({});
        let to = Recipient {
            delivery_id: DeliveryId::new_random(),
            client_id: ClientId::new_random(),
            email: &email,
            full_name: &name,
            comment: "",
            attributes: &attributes,
        };
        let templates = text(&template_of(&subject), &template_of(&body));
        let mail = compose(&config.http, &key, &message(&templates), &to, &sender(&from));
        let mail = match mail {
            Ok(mail) => mail,
            // The only reason these values may not go out: the size.
            Err(reason) => {
                prop_assert!(reason.contains("MAX_MESSAGE_SIZE"), "{}", reason);
                return Ok(());
            }
        };
        let raw = &mail.raw;

        // CRLF only, no NUL, no line over 998 bytes, no header line over 78 but for To.
        for (i, &byte) in raw.iter().enumerate() {
            prop_assert!(byte != 0);
            if byte == b'\r' { prop_assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {}", i); }
            if byte == b'\n' { prop_assert_eq!(raw[i - 1], b'\r', "bare LF at {}", i); }
        }
        let text = String::from_utf8_lossy(raw);
        for line in text.split("\r\n") {
            prop_assert!(line.len() <= 998, "a line of {} bytes", line.len());
        }
        let head = text.split("\r\n\r\n").next().unwrap();
        let subject_lines: Vec<&str> = head
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject:"))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
            .map(|(_, l)| l)
            .collect();
        for line in &subject_lines {
            prop_assert!(line.len() <= 78, "{:?}", line);
        }

        // The same headers every time: none added by a value, none lost.
        let mut names = header_names(raw);
        names.sort();
        prop_assert_eq!(names, vec![
            "content-transfer-encoding", "content-type", "date", "feedback-id", "from", "list-unsubscribe",
            "list-unsubscribe-post", "message-id", "mime-version", "subject", "to",
        ]);

        // An independent parser reads back what the values became.
        let parsed = MessageParser::default().parse(&raw[..]).expect("mail-parser reads it");
        let address = mailwarm::mail::address::parse(&email).unwrap();
        let clean_name = one_line(&name);
        let unsubscribe = parsed.header_raw("List-Unsubscribe").unwrap().trim().trim_matches(['<', '>']).to_owned();
        let fill = |pieces: &[String]| filled(pieces, &clean_name, &address.text, &unsubscribe);
        prop_assert_eq!(parsed.subject().unwrap_or_default(), one_line(&fill(&subject)));
        let expected_body = body_text(&fill(&body));
        let got_body = parsed.body_text(0).unwrap_or_default().replace("\r\n", "\n");
        prop_assert_eq!(got_body.trim_end_matches('\n'), expected_body.trim_end_matches('\n'));
        let to = match parsed.header("To") {
            Some(HeaderValue::Address(list)) => list.first().cloned(),
            other => panic!("To: {other:?}"),
        };
        let to = to.unwrap();
        prop_assert_eq!(to.address().unwrap(), address.wire());
        let expected_name: String = clean_name.chars().take(200).collect();
        prop_assert_eq!(to.name().unwrap_or_default(), expected_name.as_str());
        prop_assert_eq!(mail.envelope.to()[0].to_string(), address.wire());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Hostile names and attributes through an HTML message in a layout with a stylesheet
    /// (so css-inline parses and writes the document again): the mail stays well formed,
    /// and the value is text in the HTML part, never markup.
    #[test]
    fn any_values_make_a_well_formed_html_mail(
        name in hostile_text(12),
        city in hostile_text(6),
        email in address(),
    ) {
        let config = Config::from_args(["server"]).unwrap();
        let from: Mailbox = "Acme News <news@example.com>".parse().unwrap();
        let attributes = serde_json::json!({ "city": city });
        let to = Recipient {
            delivery_id: DeliveryId::new_random(),
            client_id: ClientId::new_random(),
            email: &email,
            full_name: &name,
            comment: "",
            attributes: &attributes,
        };
        let templates = MessageTemplates::compile(&Content {
            format: MessageFormat::Html,
            subject: "News for {{ client.full_name }}",
            body: "<p id=\"n\">{{ client.full_name }}</p><p title=\"{{ client.attributes.city }}\">x</p>",
            text_body: None,
            layout: Some("<html><head><style>p { margin: 0 }</style></head><body>{{ content }}</body></html>"),
        })
        .unwrap();
        let mail = compose(&config.http, &[7u8; 32], &message(&templates), &to, &sender(&from)).expect("it goes out");
        let raw = &mail.raw;
        for (i, &byte) in raw.iter().enumerate() {
            prop_assert!(byte != 0);
            if byte == b'\r' { prop_assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {}", i); }
            if byte == b'\n' { prop_assert_eq!(raw[i - 1], b'\r', "bare LF at {}", i); }
        }
        for line in String::from_utf8_lossy(raw).split("\r\n") {
            prop_assert!(line.len() <= 998, "a line of {} bytes", line.len());
        }
        let parsed = MessageParser::default().parse(&raw[..]).expect("mail-parser reads it");
        let ct = parsed.content_type().unwrap();
        prop_assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("alternative")));
        prop_assert_eq!(parsed.text_body.len(), 1);
        prop_assert_eq!(parsed.html_body.len(), 1);
        let html = parsed.body_html(0).unwrap().into_owned();
        // The name's paragraph holds the name as text: no tag, no attribute, no end of it.
        let inner = html
            .split("id=\"n\"")
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .map(|(_, rest)| rest.split("</p>").next().unwrap().to_owned())
            .expect("the name's paragraph");
        prop_assert!(!inner.contains('<') && !inner.contains('>'), "{}", inner);
        let shown = inner
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&");
        prop_assert_eq!(shown, one_line(&name));
        // The attribute value stays inside its quotes: our two paragraphs and the footer's.
        prop_assert_eq!(html.matches("<p").count(), 3, "{}", html);
    }
}

#[test]
fn values_are_filled_once_and_the_size_is_known_before_building() {
    let config = Config::from_args(["server"]).unwrap();
    let from: Mailbox = "news@example.com".parse().unwrap();
    let name = "{{full_name}}".repeat(15);
    let attributes = serde_json::json!({});
    let to = Recipient {
        delivery_id: DeliveryId::new_random(),
        client_id: ClientId::new_random(),
        email: "ann@example.com",
        full_name: &name,
        comment: "",
        attributes: &attributes,
    };
    // 1 MB of placeholders, each a 195-byte name: 15 MB, over 10 MiB; refused while it is
    // written, never built whole.
    let templates = text("S", &"{{full_name}}".repeat(80_000));
    let err = compose(&config.http, &[1; 32], &message(&templates), &to, &sender(&from)).unwrap_err();
    assert!(err.contains("MAX_MESSAGE_SIZE"), "{err}");
    // Under the limit it is built, and the name's placeholders stay as written.
    let templates = text("S", &"{{full_name}}".repeat(1_000));
    let mail = compose(&config.http, &[1; 32], &message(&templates), &to, &sender(&from)).unwrap();
    let parsed = MessageParser::default().parse(&mail.raw[..]).unwrap();
    assert_eq!(parsed.body_text(0).unwrap().trim_end(), name.repeat(1_000));
}
