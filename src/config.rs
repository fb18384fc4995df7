//! Configuration: one `Config`, every setting both a command-line flag and an environment
//! variable. Values are parsed and checked at start-up; a bad one stops the server with a
//! single line naming the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use url::Url;

use crate::mail::Mailer;
use crate::mail::smtp::{SmtpPool, SmtpTarget, SmtpTimeouts};

/// Everything the service can be told, grouped by concern.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Folder for the service's own files: the embedded PostgreSQL, the mail outbox.
    #[arg(long, env = "DATA_DIR", default_value = "./var", global = true)]
    pub data_dir: PathBuf,

    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// After SIGTERM or Ctrl-C, how long open requests and connections may take to finish.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub mail: MailConfig,

    #[command(flatten)]
    pub accounts: AccountsConfig,

    #[command(flatten)]
    pub dispatch: DispatchConfig,

    #[command(flatten)]
    pub bounces: BounceConfig,

    #[command(flatten)]
    pub senders: SendersConfig,
}

impl Config {
    /// Checks that span several settings; one line naming them on failure.
    pub fn validate(&self) -> Result<(), String> {
        if self.dispatch.lease_ttl <= self.mail.send_timeout {
            return Err(format!(
                "LEASE_TTL ({:?}) must be longer than SEND_TIMEOUT ({:?}), or a live send could lose its lease",
                self.dispatch.lease_ttl, self.mail.send_timeout
            ));
        }
        // Retry delays are added to the database clock: keep them within a sane range.
        if self.dispatch.retry_max > Duration::from_secs(30 * 86_400) {
            return Err(format!(
                "RETRY_MAX ({:?}) must be at most 30 days",
                self.dispatch.retry_max
            ));
        }
        if self.dispatch.retry_base > self.dispatch.retry_max {
            return Err(format!(
                "RETRY_BASE ({:?}) must not be longer than RETRY_MAX ({:?})",
                self.dispatch.retry_base, self.dispatch.retry_max
            ));
        }
        let dkim = [
            self.mail.dkim_domain.is_some(),
            self.mail.dkim_selector.is_some(),
            self.mail.dkim_private_key.is_some(),
        ];
        if dkim.contains(&true) && dkim.contains(&false) {
            return Err(
                "DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY go together: set all three or none".to_owned(),
            );
        }
        for (name, value) in [
            ("DKIM_DOMAIN", &self.mail.dkim_domain),
            ("DKIM_SELECTOR", &self.mail.dkim_selector),
        ] {
            if let Some(value) = value
                && (value.is_empty()
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            {
                return Err(format!(
                    "{name} ({value:?}) must be a DNS name: letters, digits, '.', '-', '_'"
                ));
            }
        }
        if self
            .dispatch
            .send_rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            return Err("SEND_RATE must be a positive number of messages per second".to_owned());
        }
        Ok(())
    }

    /// Parses command-line style arguments (the first one is the program name) and the
    /// environment, as the binary does; tests build their configuration this way.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Standalone {
            #[command(flatten)]
            config: Config,
        }
        <Standalone as clap::Parser>::try_parse_from(args).map(|s| s.config)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// PostgreSQL to use. Unset: start an embedded PostgreSQL in DATA_DIR from the
    /// installed server binaries.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Connections in the pool of each instance (the dispatcher uses up to three at once:
    /// recording a batch, preparing the next, and briefly sending notices or keeping
    /// leases alive).
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(3..=1000), global = true)]
    pub db_pool_size: u32,

    /// How long a request waits for a pooled connection before failing.
    #[arg(long, env = "DB_POOL_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub db_pool_timeout: Duration,

    /// Folder of the PostgreSQL server binaries (initdb, postgres) for the embedded
    /// database. Unset: `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
    #[arg(long, env = "PG_BINDIR", global = true)]
    pub pg_bindir: Option<PathBuf>,

    /// TCP port of the embedded PostgreSQL (it listens on 127.0.0.1 only).
    #[arg(long, env = "EMBEDDED_PG_PORT", default_value_t = 54329, global = true)]
    pub embedded_pg_port: u16,
}

/// The HTTP side: listener, limits, browser policy.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Address and port the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub bind_addr: SocketAddr,

    /// The address users reach the service at; links in mails are built from it, never
    /// from a request's Host header. Default: http://BIND_ADDR.
    #[arg(long, env = "PUBLIC_URL", value_parser = parse_public_url, global = true)]
    pub public_url: Option<Url>,

    /// Largest accepted request body, e.g. 4MiB or 512KiB.
    #[arg(long, env = "BODY_LIMIT", default_value = "4MiB", value_parser = parse_size, global = true)]
    pub body_limit: usize,

    /// Largest GraphQL answer; a larger one is replaced by an error asking for less.
    #[arg(long, env = "RESPONSE_LIMIT", default_value = "16MiB", value_parser = parse_size, global = true)]
    pub response_limit: usize,

    /// Longest time a request may take before it is answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// Other origins allowed to call the API from a browser, comma separated
    /// (e.g. https://app.example.com). Default: none, same origin only.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin, global = true)]
    pub cors_origins: Vec<String>,

    /// Serve the GraphiQL playground at /graphiql.
    #[arg(long, env = "GRAPHIQL", default_value_t = true, action = ArgAction::Set, global = true)]
    pub graphiql: bool,

    /// Answer introspection queries (GraphiQL needs them).
    #[arg(long, env = "INTROSPECTION", default_value_t = true, action = ArgAction::Set, global = true)]
    pub introspection: bool,

    /// How long a new WebSocket may take to send `connection_init` (closed 4408 after).
    #[arg(long, env = "WS_INIT_TIMEOUT", default_value = "3s", value_parser = parse_duration, global = true)]
    pub ws_init_timeout: Duration,

    /// How often an idle WebSocket is pinged; a peer silent for two of these is dropped.
    #[arg(long, env = "WS_KEEPALIVE", default_value = "30s", value_parser = parse_duration, global = true)]
    pub ws_keepalive: Duration,

    /// WebSockets open at once from one client IP (more are refused with 429).
    #[arg(long, env = "WS_MAX_PER_IP", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub ws_max_per_ip: u32,

    /// Operations (subscriptions, queries) running at once on one WebSocket.
    #[arg(long, env = "WS_MAX_OPERATIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub ws_max_operations: u32,

    /// WebSockets open at once in all. Unset: what the open-file limit leaves after a
    /// reserve for the database pool, SMTP and HTTP requests (read at start).
    #[arg(long, env = "WS_MAX_CONNECTIONS", global = true)]
    pub ws_max_connections: Option<u32>,
}

/// Where mail goes and how long the mail server may take.
#[derive(Debug, Clone, Args)]
pub struct MailConfig {
    /// The mail server: smtp://host:port (plain), smtp://host?tls=required (STARTTLS),
    /// smtps://host (TLS), with user:pass@ for AUTH. Unset: mail is written to OUTBOX_DIR.
    #[arg(long, env = "SMTP_URL", value_parser = parse_smtp_url, global = true)]
    pub smtp_url: Option<Url>,

    /// Root certificates (a PEM file) trusted for SMTP over TLS besides the public web roots,
    /// e.g. the private CA of an internal relay.
    #[arg(long, env = "SMTP_TLS_CA", global = true)]
    pub smtp_tls_ca: Option<PathBuf>,

    /// Folder for .eml files when SMTP_URL is unset. Default: DATA_DIR/outbox.
    #[arg(long, env = "OUTBOX_DIR", global = true)]
    pub outbox_dir: Option<PathBuf>,

    /// The From of every mail, e.g. `Acme <news@acme.example>`.
    #[arg(long, env = "MAIL_FROM", default_value = "mailwarm@localhost", value_parser = parse_mailbox, global = true)]
    pub mail_from: lettre::message::Mailbox,

    /// TCP connect, greeting, EHLO, STARTTLS and AUTH together.
    #[arg(long, env = "SMTP_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub smtp_connect_timeout: Duration,

    /// Each SMTP command's reply, including the one after the message.
    #[arg(long, env = "SMTP_COMMAND_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub smtp_command_timeout: Duration,

    /// The whole exchange for one message.
    #[arg(long, env = "SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true)]
    pub send_timeout: Duration,

    /// SMTP connections in use at once per instance.
    #[arg(long, env = "SMTP_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000), global = true)]
    pub smtp_concurrency: u16,

    /// DKIM: the signing domain (`d=`), e.g. `acme.example`. With DKIM_SELECTOR and
    /// DKIM_PRIVATE_KEY set too, every mail is signed (`server dns-records` prints the record).
    #[arg(long, env = "DKIM_DOMAIN", global = true)]
    pub dkim_domain: Option<String>,

    /// DKIM: the selector (`s=`); the public key is published at `<selector>._domainkey.<domain>`.
    #[arg(long, env = "DKIM_SELECTOR", global = true)]
    pub dkim_selector: Option<String>,

    /// DKIM: a PEM file with the private key, RSA (2048 bits; PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
    #[arg(long, env = "DKIM_PRIVATE_KEY", value_parser = parse_dkim_key, global = true)]
    pub dkim_private_key: Option<crate::mail::dkim::DkimKey>,

    /// The largest composed message; a delivery whose message would be larger fails
    /// (PERMANENT_FAILURE) instead of being built.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value = "10MiB", value_parser = parse_message_size, global = true)]
    pub max_message_size: usize,
}

impl MailConfig {
    /// The DKIM signer, when all three DKIM settings are given (`Config::validate` refuses
    /// one or two of them).
    pub fn dkim_signer(&self) -> Option<crate::mail::dkim::Signer> {
        match (&self.dkim_domain, &self.dkim_selector, &self.dkim_private_key) {
            (Some(domain), Some(selector), Some(key)) => Some(crate::mail::dkim::Signer::new(domain, selector, key)),
            _ => None,
        }
    }

    /// A connection pool to one SMTP server with the configured timeouts and SMTP_TLS_CA.
    pub fn smtp_pool(&self, target: SmtpTarget, connections: usize) -> anyhow::Result<SmtpPool> {
        let timeouts = SmtpTimeouts {
            connect: self.smtp_connect_timeout,
            command: self.smtp_command_timeout,
            send: self.send_timeout,
        };
        let extra_roots = match &self.smtp_tls_ca {
            Some(path) => crate::mail::smtp::load_roots(path).map_err(|e| anyhow::anyhow!("SMTP_TLS_CA: {e}"))?,
            None => Vec::new(),
        };
        Ok(SmtpPool::new(target, timeouts, connections, extra_roots))
    }

    /// Where mail goes: SMTP when SMTP_URL is set, else the outbox folder.
    pub fn mailer(&self, data_dir: &std::path::Path) -> anyhow::Result<Mailer> {
        let config = self;
        match &config.smtp_url {
            Some(url) => {
                let target = SmtpTarget::from_url(url).map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?;
                tracing::info!(host = %target.host, port = target.port, security = ?target.security, "sending mail over SMTP");
                let pool = self.smtp_pool(target, usize::from(config.smtp_concurrency))?;
                Ok(Mailer::Smtp(std::sync::Arc::new(pool)))
            }
            None => {
                let dir = config.outbox_dir.clone().unwrap_or_else(|| data_dir.join("outbox"));
                anyhow::Context::with_context(std::fs::create_dir_all(&dir), || {
                    format!("OUTBOX_DIR: cannot create {}", dir.display())
                })?;
                tracing::info!(dir = %dir.display(), "SMTP_URL is not set: writing mail to the outbox folder");
                Ok(Mailer::Outbox(dir))
            }
        }
    }
}

/// Sign-in: sessions and e-mailed tokens.
#[derive(Debug, Clone, Args)]
pub struct AccountsConfig {
    /// How long an e-mail verification link works.
    #[arg(long, env = "VERIFY_TOKEN_TTL", default_value = "24h", value_parser = parse_duration, global = true)]
    pub verify_token_ttl: Duration,

    /// How long a session lasts without use (each use extends it).
    #[arg(long, env = "SESSION_TTL", default_value = "30days", value_parser = parse_duration, global = true)]
    pub session_ttl: Duration,

    /// How long a password-reset link works.
    #[arg(long, env = "RESET_TOKEN_TTL", default_value = "1h", value_parser = parse_duration, global = true)]
    pub reset_token_ttl: Duration,

    /// `open`: anyone may register; `closed`: only admins create accounts.
    #[arg(long, env = "REGISTRATION", value_enum, default_value = "open", global = true)]
    pub registration: Registration,

    /// Deliveries a user's runs may start per day (UTC); beyond it the next run waits for
    /// the next day. Unset: no quota.
    #[arg(long, env = "DAILY_SEND_QUOTA", global = true)]
    pub daily_send_quota: Option<u32>,

    /// Failed logins per account per window, then RATE_LIMITED until the window ends.
    #[arg(long, env = "LOGIN_LIMIT_ACCOUNT", default_value = "10/15m", value_parser = parse_limit, global = true)]
    pub login_limit_account: Limit,

    /// Failed logins per client IP per window.
    #[arg(long, env = "LOGIN_LIMIT_IP", default_value = "100/15m", value_parser = parse_limit, global = true)]
    pub login_limit_ip: Limit,

    /// register, resendVerification and requestPasswordReset calls per client IP per window.
    #[arg(long, env = "MAIL_LIMIT_IP", default_value = "20/1h", value_parser = parse_limit, global = true)]
    pub mail_limit_ip: Limit,

    /// register, resendVerification and requestPasswordReset calls per e-mail address per window.
    #[arg(long, env = "MAIL_LIMIT_ADDRESS", default_value = "5/1h", value_parser = parse_limit, global = true)]
    pub mail_limit_address: Limit,

    /// Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client IP.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net, global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}

/// At most `max` events per `window`, written `10/15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// Bounces, complaints and suppression.
#[derive(Debug, Clone, Args)]
pub struct BounceConfig {
    /// The envelope sender (MAIL FROM) that bounces go to, e.g. `bounces@acme.example`: each
    /// message goes out from `bounces+<token>@acme.example`, the token a signed reference to
    /// its delivery (VERP). Unset: MAIL_FROM's address, no token.
    #[arg(long, env = "BOUNCE_ADDRESS", value_parser = parse_bounce_address, global = true)]
    pub bounce_address: Option<crate::mail::address::Address>,

    /// The mailbox bounces and feedback reports arrive in, polled by one instance at a time:
    /// `imaps://user:password@host[:port]/INBOX` (or `imap://` on loopback).
    #[arg(long, env = "BOUNCE_IMAP_URL", value_parser = parse_imap_url, global = true)]
    pub bounce_imap_url: Option<Url>,

    /// How often the bounce mailbox is read.
    #[arg(long, env = "BOUNCE_POLL_INTERVAL", default_value = "1m", value_parser = parse_duration, global = true)]
    pub bounce_poll_interval: Duration,

    /// The key that signs generic bounce webhooks (`X-Mailwarm-Signature`); unset: that
    /// webhook is off.
    #[arg(long, env = "BOUNCE_WEBHOOK_SECRET", global = true, hide_env_values = true)]
    pub bounce_webhook_secret: Option<String>,

    /// Amazon SES through SNS: the topic ARNs whose notifications `POST
    /// /webhooks/bounces/ses` takes, comma-separated; unset: that webhook is off.
    #[arg(long, env = "SES_TOPIC_ARNS", value_delimiter = ',', global = true)]
    pub ses_topic_arns: Vec<String>,

    /// The hosts SNS signing certificates and subscription links may come from (`*` stands
    /// for one label).
    #[arg(long, env = "SNS_CERT_HOST", default_value = "sns.*.amazonaws.com", global = true)]
    pub sns_cert_host: String,

    /// Soft-bounced deliveries in a row (across runs) that suppress an address.
    #[arg(long, env = "SOFT_BOUNCE_LIMIT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub soft_bounce_limit: u32,

    /// A mailing pauses itself when complaints about its current run go over this share of
    /// the run's sent messages (0.001 = 0.1%)...
    #[arg(long, env = "COMPLAINT_PAUSE_RATE", default_value_t = 0.001, value_parser = parse_rate, global = true)]
    pub complaint_pause_rate: f64,

    /// ... once the run has sent at least this many.
    #[arg(long, env = "COMPLAINT_MIN_SENT", default_value_t = 1000, global = true)]
    pub complaint_min_sent: u32,

    /// The sender id closing every Feedback-ID header (`<mailing>:<owner>:mailwarm:<id>`),
    /// for Gmail's feedback loop.
    #[arg(long, env = "FEEDBACK_SENDER_ID", default_value = "mailwarm", value_parser = parse_feedback_id, global = true)]
    pub feedback_sender_id: String,
}

impl BounceConfig {
    pub fn policy(&self) -> crate::deliverability::bounces::Policy {
        crate::deliverability::bounces::Policy {
            soft_bounce_limit: self.soft_bounce_limit,
            complaint_pause_rate: self.complaint_pause_rate,
            complaint_min_sent: self.complaint_min_sent,
        }
    }
}

fn parse_bounce_address(value: &str) -> Result<crate::mail::address::Address, String> {
    let address = crate::mail::address::parse(value).map_err(|e| format!("not an address: {e}"))?;
    if address.text.contains('+') || !address.text.is_ascii() {
        return Err("must be a plain ASCII address without '+': tokens are added as `+<token>`".to_owned());
    }
    Ok(address)
}

fn parse_imap_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "imap" | "imaps") || url.host_str().is_none() || url.username().is_empty() {
        return Err("must be imaps://user:password@host[:port]/MAILBOX (or imap:// on a trusted network)".to_owned());
    }
    Ok(url)
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|_| "not a number".to_owned())?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("must be between 0 and 1 (0.001 = 0.1%)".to_owned());
    }
    Ok(rate)
}

fn parse_feedback_id(value: &str) -> Result<String, String> {
    if value.is_empty()
        || value.len() > 64
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("at most 64 letters, digits, '-', '_' or '.'".to_owned());
    }
    Ok(value.to_owned())
}

/// The durable mail queue: retries and polling.
#[derive(Debug, Clone, Args)]
pub struct DispatchConfig {
    /// Fallback poll of the queue when no wake-up arrives.
    #[arg(long, env = "DISPATCH_INTERVAL", default_value = "60s", value_parser = parse_duration, global = true)]
    pub dispatch_interval: Duration,

    /// First retry delay after a temporary failure; doubles each time.
    #[arg(long, env = "RETRY_BASE", default_value = "1m", value_parser = parse_duration, global = true)]
    pub retry_base: Duration,

    /// Longest retry delay.
    #[arg(long, env = "RETRY_MAX", default_value = "1h", value_parser = parse_duration, global = true)]
    pub retry_max: Duration,

    /// How long a claimed delivery stays an instance's without a heartbeat; must exceed
    /// SEND_TIMEOUT. An instance that dies loses its claims after this.
    #[arg(long, env = "LEASE_TTL", default_value = "2m", value_parser = parse_duration, global = true)]
    pub lease_ttl: Duration,

    /// Deliveries claimed per batch.
    #[arg(long, env = "DISPATCH_BATCH", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub dispatch_batch: u32,

    /// Messages per second per instance; unset: as fast as the mail server takes them.
    #[arg(long, env = "SEND_RATE", global = true)]
    pub send_rate: Option<f64>,

    /// Consecutive connection-level failures after which sending pauses.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub breaker_failures: u32,

    /// How long sending pauses after the breaker opens, before one probe message.
    #[arg(long, env = "BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration, global = true)]
    pub breaker_cooldown: Duration,

    /// Tries per message before it is marked FAILED.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=100), global = true)]
    pub max_attempts: u16,

    /// How long the log of a finished run (its deliveries, attempts and bounces) is kept;
    /// unset: for ever.
    #[arg(long, env = "LOG_RETENTION", value_parser = parse_duration, global = true)]
    pub log_retention: Option<Duration>,
}

impl HttpConfig {
    /// PUBLIC_URL, or http://BIND_ADDR when unset.
    pub fn public_url(&self) -> Url {
        let mut url = self.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}/", self.bind_addr)).expect("a socket address makes a valid URL")
        });
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url
    }

    /// A link for mails: PUBLIC_URL + `path` + `query`, never the request's Host.
    pub fn link(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = self.public_url().join(path).expect("a relative path joins");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url.to_string()
    }
}

/// `30s`, `5m`, `250ms`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 30s, 5m or 250ms)"))
}

/// `4MiB`, `512KiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| format!("{e} (write sizes like 4MiB or 512KiB)"))?;
    usize::try_from(size.as_u64()).map_err(|_| "too large".to_owned())
}

fn parse_public_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL with a host".to_owned());
    }
    Ok(url)
}

fn parse_dkim_key(path: &str) -> Result<crate::mail::dkim::DkimKey, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    crate::mail::dkim::DkimKey::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
}

fn parse_smtp_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    crate::mail::smtp::SmtpTarget::from_url(&url)?;
    Ok(url)
}

/// An address with an optional name; checked by the same rules as every other address,
/// its domain kept as an A-label.
fn parse_mailbox(s: &str) -> Result<lettre::message::Mailbox, String> {
    let hint = "(write an address like news@example.com or `Acme <news@example.com>`)";
    let mailbox: lettre::message::Mailbox = s.parse().map_err(|e| format!("{e} {hint}"))?;
    let address = crate::mail::address::parse(mailbox.email.as_ref()).map_err(|e| format!("{e} {hint}"))?;
    Ok(lettre::message::Mailbox::new(
        crate::mail::message::display_name(mailbox.name.as_deref()),
        address.lettre()?,
    ))
}

fn parse_message_size(s: &str) -> Result<usize, String> {
    let size = parse_size(s)?;
    if size < 64 * 1024 {
        return Err("must be at least 64KiB".to_owned());
    }
    Ok(size)
}

/// `10/15m`: ten per fifteen minutes.
pub fn parse_limit(s: &str) -> Result<Limit, String> {
    let (max, window) = s
        .split_once('/')
        .ok_or_else(|| "write a limit like 10/15m (ten per fifteen minutes)".to_owned())?;
    let max = max
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| format!("`{max}` is not a positive count (write a limit like 10/15m)"))?;
    let window = parse_duration(window.trim())?;
    if window < Duration::from_secs(1) {
        return Err("the window must be at least 1s".to_owned());
    }
    Ok(Limit { max, window })
}

/// SMTP servers, sender identities and limits shared by every instance.
#[derive(Debug, Clone, clap::Args)]
pub struct SendersConfig {
    /// 32 bytes (64 hex digits or base64) that seal SMTP credentials and DKIM keys in the
    /// database; the same on every instance. Without it, servers with credentials and
    /// identities with DKIM keys cannot be saved.
    #[arg(long, env = "CREDENTIALS_KEY", value_parser = parse_credentials_key, global = true, hide_env_values = true)]
    pub credentials_key: Option<crate::senders::secrets::SealingKey>,

    /// Limits per recipient domain, shared by every instance: `gmail.com=600/1m,yahoo.com=20/1s`.
    #[arg(long, env = "DOMAIN_LIMITS", value_delimiter = ',', value_parser = parse_domain_limit, global = true)]
    pub domain_limits: Vec<DomainLimit>,

    /// How often an instance reads the SMTP servers and sender identities again.
    #[arg(long, env = "SENDERS_REFRESH", default_value = "5s", value_parser = parse_duration, global = true)]
    pub senders_refresh: Duration,
}

/// At most `limit.max` messages per `limit.window` to addresses at `domain`.
#[derive(Debug, Clone)]
pub struct DomainLimit {
    pub domain: String,
    pub limit: Limit,
}

fn parse_domain_limit(s: &str) -> Result<DomainLimit, String> {
    let (domain, limit) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write a domain limit like gmail.com=600/1m"))?;
    let domain = domain.trim().trim_start_matches('@').to_ascii_lowercase();
    if domain.is_empty() || !domain.contains('.') || domain.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!("`{domain}` is not a domain name"));
    }
    let limit = parse_limit(limit)?;
    if limit.window.as_secs() > 86_400 || limit.window.subsec_nanos() != 0 {
        return Err(format!("{domain}: the window must be whole seconds, at most a day"));
    }
    Ok(DomainLimit { domain, limit })
}

fn parse_credentials_key(s: &str) -> Result<crate::senders::secrets::SealingKey, String> {
    crate::senders::secrets::SealingKey::parse(s)
}

/// `10.0.0.1` or `10.0.0.0/8`.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))
}

fn parse_origin(s: &str) -> Result<String, String> {
    let url = parse_public_url(s.trim())?;
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_in_human_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
        assert_eq!(parse_size("4MiB").unwrap(), 4 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(
            parse_limit("10/15m").unwrap(),
            Limit {
                max: 10,
                window: Duration::from_secs(900)
            }
        );
        assert!(parse_limit("0/1m").is_err());
        assert!(parse_limit("10").unwrap_err().contains("10/15m"));
        assert!(
            parse_net("10.0.0.0/8")
                .unwrap()
                .contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap())
        );
        assert!(parse_net("::1").is_ok());
        assert!(parse_size("big").is_err());
    }

    #[test]
    fn links_are_built_from_the_public_url() {
        let config = Config::from_args(["server", "--public-url", "https://mail.example.com/app"]).unwrap();
        let link = config.http.link("verify-email", &[("token", "a b")]);
        assert_eq!(link, "https://mail.example.com/app/verify-email?token=a+b");
        let config = Config::from_args(["server", "--bind-addr", "127.0.0.1:9000"]).unwrap();
        assert_eq!(config.http.link("x", &[]), "http://127.0.0.1:9000/x");
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            parse_origin("https://app.example.com/path").unwrap(),
            "https://app.example.com"
        );
        assert!(parse_origin("ftp://x").is_err());
    }
}
