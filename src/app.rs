//! `AppState`: what every request and background task shares. Built once at start-up,
//! cloned cheaply (an `Arc` inside).

use std::sync::Arc;

use crate::config::Config;
use crate::db::{DbPool, PooledConn};
use crate::error::AppResult;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: DbPool,
}

impl AppState {
    pub fn new(config: Config, pool: DbPool) -> Self {
        AppState {
            inner: Arc::new(Inner { config, pool }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    /// A connection from the pool; waits at most DB_POOL_TIMEOUT.
    pub async fn conn(&self) -> AppResult<PooledConn> {
        Ok(self.inner.pool.get().await?)
    }
}
