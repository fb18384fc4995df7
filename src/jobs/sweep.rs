//! The recurring clean-up: expired sessions and e-mail tokens, old rate-limit windows,
//! uploads abandoned during their COPY.
//! Any instance may run it; the deletes are idempotent.

use serde::{Deserialize, Serialize};

use super::{BackgroundJob, JobError};
use crate::db::DbPool;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sweep;

impl BackgroundJob for Sweep {
    const KIND: &'static str = "sweep";
    type Context = DbPool;

    async fn run(&self, pool: &DbPool) -> Result<(), JobError> {
        let retry = |err: &dyn std::fmt::Display| JobError::Retry(err.to_string());
        let mut conn = pool.get().await.map_err(|e| retry(&e))?;
        let sessions = crate::accounts::model::sweep(&mut conn).await.map_err(|e| retry(&e))?;
        let windows = crate::accounts::throttle::sweep(&mut conn)
            .await
            .map_err(|e| retry(&e))?;
        let uploads = crate::clients::import::sweep(&mut conn).await.map_err(|e| retry(&e))?;
        if sessions + windows + uploads > 0 {
            tracing::debug!(
                rows = sessions + windows + uploads,
                "expired sessions, tokens, rate-limit windows and abandoned uploads deleted"
            );
        }
        Ok(())
    }
}
