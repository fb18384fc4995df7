//! mailwarm: recurring e-mail mailings behind one GraphQL API, with PostgreSQL as the
//! only state. A guided tour of the modules, from the edge inwards:

/// Command-line flags and environment variables: one `Config`.
pub mod config;
/// Start-up and shutdown of the whole service.
pub mod server;
/// The axum router: GraphQL over HTTP and WebSocket, health, pages, static web/ files.
pub mod http;
/// Schema assembly from the domain parts, with depth, complexity and field limits.
pub mod graphql;
/// `AppState`: pool, mailer and config, shared by requests and background tasks.
pub mod app;
/// `AppError`: the one place errors become GraphQL error codes.
pub mod error;

/// Accounts: users, roles, sessions, e-mail tokens.
pub mod accounts;
/// Clients: the people a user mails.
pub mod clients;
/// Messages: subject and body of what a mailing sends.
pub mod messages;
/// Mailings and their schedule model.
pub mod mailings;
/// Runs, deliveries and attempts: the mailing log as users read it.
pub mod deliveries;
/// Bounces, complaints, VERP, the bounce mailbox, webhooks and the suppression list.
pub mod deliverability;
/// SMTP servers and sender identities (admins' set-up), sealed credentials, sending windows.
pub mod senders;
/// The blog: posts by admins, read by anyone.
pub mod blog;
/// Statistics: the public home page numbers, per-day numbers of a user's mailings.
pub mod stats;

/// Background jobs other than deliveries (account mails, sweeps) on one PostgreSQL queue.
pub mod jobs;
/// The dispatcher: starts runs, claims deliveries with leases, sends, records attempts.
pub mod dispatch;
/// Live events for subscriptions, from every instance through LISTEN/NOTIFY.
pub mod events;
/// Prometheus metrics.
pub mod metrics;
/// Background tasks under a supervisor; the health `/readyz` reports.
pub mod tasks;

/// Mail: composing messages; SMTP, outbox folder and in-memory transports.
pub mod mail;
/// Pool, embedded migrations, table definitions, the embedded PostgreSQL.
pub mod db;
/// The backoff every retrying queue shares.
pub mod retry;
/// Input checks that name the offending field.
pub mod validate;
/// Logging set-up (text or JSON lines).
pub mod telemetry;
