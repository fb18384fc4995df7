//! What composing a delivery's mail costs (not a test): run by `bash bench/dispatch.sh`, or
//! alone with `cargo run --release --example bench_render`.
//!
//! Composes the mail of 20,000 deliveries (templates rendered, MIME built, the wire check)
//! for the benchmark's one-line text message and for its HTML newsletter in a layout
//! (examples/support/newsletter.rs: HTML escaping, the layout, CSS inlining, the text part
//! derived), alternating the two over three rounds in one process, and prints the CPU time
//! per delivery of each and what compiling each message's templates once per run costs;
//! then the text message signed with DKIM, an RSA 2048 and an Ed25519 key (made with the
//! openssl command line), to show what signing adds per delivery.

#[path = "support/newsletter.rs"]
mod newsletter;

use std::time::Instant;

use lettre::message::Mailbox;
use mailwarm::config::Config;
use mailwarm::db::types::{ClientId, DeliveryId, MailingId};
use mailwarm::dispatch::compose::{Recipient, RunMessage, Sender, compose};
use mailwarm::messages::model::MessageFormat;
use mailwarm::messages::template::{Content, MessageTemplates};

const DELIVERIES: usize = 20_000;

fn main() -> anyhow::Result<()> {
    let config = Config::from_args(["server", "--public-url", "https://news.example.com/"])?;
    let from: Mailbox = "Acme News <news@example.com>".parse()?;
    let key = [7u8; 32];
    let text = Content {
        format: MessageFormat::Text,
        subject: "Benchmark",
        body: "Hello {{full_name}}, this is a benchmark.",
        text_body: None,
        layout: None,
    };
    let html = Content {
        format: MessageFormat::Html,
        subject: newsletter::SUBJECT,
        body: newsletter::BODY,
        text_body: None,
        layout: Some(newsletter::LAYOUT),
    };
    let clients: Vec<(String, String, serde_json::Value)> = (0..DELIVERIES)
        .map(|i| {
            (
                format!("client{i}@example.com"),
                format!("Client {i} <O'Brien & Co>"),
                serde_json::json!({ "company": format!("Company {i}") }),
            )
        })
        .collect();

    let keys = tempfile::tempdir()?;
    let signer = |algorithm: &str| -> anyhow::Result<mailwarm::mail::dkim::Signer> {
        let path = keys.path().join(format!("{algorithm}.pem"));
        let mut args = vec!["genpkey", "-algorithm", algorithm];
        if algorithm == "RSA" {
            args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
        }
        args.extend(["-out", path.to_str().unwrap()]);
        anyhow::ensure!(
            std::process::Command::new("openssl")
                .args(&args)
                .stderr(std::process::Stdio::null())
                .status()?
                .success(),
            "openssl genpkey"
        );
        let key =
            mailwarm::mail::dkim::DkimKey::from_pem(&std::fs::read_to_string(&path)?).map_err(anyhow::Error::msg)?;
        Ok(mailwarm::mail::dkim::Signer::new("example.com", "bench", &key))
    };
    let (rsa, ed25519) = (signer("RSA")?, signer("ED25519")?);
    let mut figures: Vec<(&str, Vec<f64>, f64, usize)> = vec![
        ("text", Vec::new(), 0.0, 0),
        ("html", Vec::new(), 0.0, 0),
        ("text + DKIM RSA 2048", Vec::new(), 0.0, 0),
        ("text + DKIM Ed25519", Vec::new(), 0.0, 0),
    ];
    for _round in 0..3 {
        for (name, per_delivery, compile_us, size) in &mut figures {
            let content = if name.starts_with("text") { &text } else { &html };
            let dkim = match *name {
                "text + DKIM RSA 2048" => Some(&rsa),
                "text + DKIM Ed25519" => Some(&ed25519),
                _ => None,
            };
            let started = Instant::now();
            let templates = MessageTemplates::compile(content).map_err(|(part, e)| anyhow::anyhow!("{part}: {e}"))?;
            *compile_us = started.elapsed().as_secs_f64() * 1e6;
            let message = RunMessage {
                templates: &templates,
                mailing_id: MailingId::new_random(),
                owner_id: mailwarm::db::types::UserId::new_random(),
                date: "2030-06-01".into(),
            };
            let started = Instant::now();
            let mut bytes = 0;
            for (email, full_name, attributes) in &clients {
                let to = Recipient {
                    delivery_id: DeliveryId::new_random(),
                    client_id: ClientId::new_random(),
                    email,
                    full_name,
                    comment: "",
                    attributes,
                };
                let sender = Sender {
                    from: &from,
                    bounce: None,
                    feedback_sender: "mailwarm",
                    reply_to: None,
                    dkim,
                    max_size: config.mail.max_message_size,
                };
                let mail = compose(&config.http, &key, &message, &to, &sender).map_err(|e| anyhow::anyhow!(e))?;
                bytes += mail.raw.len();
            }
            per_delivery.push(started.elapsed().as_secs_f64() * 1e6 / DELIVERIES as f64);
            *size = bytes / DELIVERIES;
        }
    }
    for (name, per_delivery, compile_us, size) in &figures {
        let rounds: Vec<String> = per_delivery.iter().map(|us| format!("{us:.1}")).collect();
        println!(
            "compose, {name} message: {} µs per delivery (rounds), {size} bytes per mail, templates compiled once per run in {compile_us:.0} µs",
            rounds.join(" / ")
        );
    }
    let best = |name: &str| {
        figures
            .iter()
            .find(|f| f.0 == name)
            .map_or(0.0, |f| f.1.iter().copied().fold(f64::MAX, f64::min))
    };
    println!(
        "the HTML newsletter adds {:.1} µs per delivery over the text message (best rounds)",
        best("html") - best("text")
    );
    println!(
        "DKIM adds {:.1} µs per delivery with RSA 2048, {:.1} µs with Ed25519 (best rounds)",
        best("text + DKIM RSA 2048") - best("text"),
        best("text + DKIM Ed25519") - best("text")
    );
    Ok(())
}
