//! Accounts: users, roles, sessions and the e-mail tokens that verify and recover them.

pub mod api_keys;
pub mod cookie;
pub mod flows;
pub mod graphql;
pub mod live;
pub mod model;
pub mod password;
pub mod roles;
pub mod throttle;
pub mod tokens;
mod viewer;

pub use viewer::{ClientIp, Credential, Viewer, authenticate, client_ip, viewer};

/// Every ten minutes, deletes expired sessions and e-mail tokens and old rate-limit windows
/// (any instance may; the deletes are idempotent).
pub async fn sweep_expired(state: crate::app::AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    loop {
        let swept = async {
            let mut conn = state.conn().await?;
            let n = model::sweep(&mut conn).await? + throttle::sweep(&mut conn).await?;
            Ok::<_, crate::error::AppError>(n)
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "expired sessions, tokens and rate-limit windows deleted"),
            Err(err) => tracing::warn!(error = %err, "sweeping expired sessions failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
