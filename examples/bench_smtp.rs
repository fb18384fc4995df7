//! The mail transport alone (no database): messages/s through mailwarm's SMTP pool into a
//! sink, SMTP_CONCURRENCY sends at a time. Run by bench/dispatch.sh beside smtp-source.

use std::time::Instant;

use futures_util::StreamExt;
use lettre::message::Mailbox;
use mailwarm::config::Config;
use mailwarm::mail::plain_mail;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("BENCH_SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:25250".to_owned());
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "8".to_owned());
    let config = Config::from_args(["server", "--smtp-url", &url, "--smtp-concurrency", &concurrency])?;
    let mailer = config.mail.mailer(&config.data_dir)?;
    let from: Mailbox = "bench@example.com".parse()?;
    let n = 20_000;
    let started = Instant::now();
    let sends = futures_util::stream::iter(0..n)
        .map(|i| {
            let mailer = mailer.clone();
            let from = from.clone();
            async move {
                let to = format!("client{i}@example.com");
                let body = format!("Hello client {i}");
                let message = plain_mail(&from, &to, "Benchmark", &body, None, None, 1 << 20).unwrap();
                mailer.send(&message).await.is_ok()
            }
        })
        .buffer_unordered(concurrency.parse()?);
    let ok = sends.filter(|ok| futures_util::future::ready(*ok)).count().await;
    println!(
        "transport alone: {:.0} messages/s ({ok} of {n} accepted, {concurrency} at a time)",
        n as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
