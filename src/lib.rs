//! mailwarm: recurring e-mail mailings behind one GraphQL API, with PostgreSQL as the
//! only state. A guided tour of the modules, from the edge inwards:

/// Accounts: users, roles, sessions, e-mail tokens.
pub mod accounts;
/// `AppState`: pool and config, shared by requests and background tasks.
pub mod app;
/// Command-line flags and environment variables: one `Config`.
pub mod config;
/// Pool, embedded migrations, table definitions, the embedded PostgreSQL.
pub mod db;
/// `AppError`: the one place errors become GraphQL error codes.
pub mod error;
/// Schema assembly from the domain parts, with depth and complexity limits.
pub mod graphql;
/// The axum router: GraphQL over HTTP and WebSocket, health, static web/ files.
pub mod http;
/// Mail: composing messages; SMTP, outbox folder and in-memory transports.
pub mod mail;
/// Mailings and their schedule model.
pub mod mailings;
/// Start-up and shutdown of the whole service.
pub mod server;
/// Logging set-up (text or JSON lines).
pub mod telemetry;
/// Input checks that name the offending field.
pub mod validate;
