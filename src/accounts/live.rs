//! Sessions as they are now, for connections that outlive one request (WebSockets).
//!
//! A socket keeps the session it signed in with, never a copy of the user: each operation
//! reads the session, the role and the active flag from the database as it starts (as an
//! HTTP request does), and each subscription event asks [`LiveSessions::viewer`] too, which
//! then answers from a cache of at most [`FRESH`]. Whatever ends a session or changes a role or the active flag NOTIFYs every
//! instance (`events::Notice::Session`); the listener calls [`LiveSessions::changed`],
//! which drops the user's cached sessions and tells this instance's sockets to re-check at
//! once (`changes`), so a sign-out or a demotion reaches open sockets within milliseconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Credential, Viewer};
use crate::db::DbPool;
use crate::db::types::UserId;
use crate::error::AppResult;

/// How long a session's state is taken from the cache before it is read again.
pub const FRESH: Duration = Duration::from_secs(1);

/// The cache and the change signal; one per instance, in `AppState`.
pub struct LiveSessions {
    cache: Mutex<HashMap<Uuid, Cached>>,
    changes: broadcast::Sender<UserId>,
}

struct Cached {
    user_id: Option<UserId>,
    viewer: Option<Viewer>,
    read_at: Instant,
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions {
            cache: Mutex::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl LiveSessions {
    /// The viewer of a session or API key now: None once the session ended or expired, the
    /// key was revoked, or the account was blocked or deleted.
    /// `fresh`: read the database whatever the cache holds (an operation starting, as an
    /// HTTP request authenticates each time); else a cached answer of at most [`FRESH`]
    /// (each event of a subscription).
    pub async fn viewer(&self, pool: &DbPool, credential: Credential, fresh: bool) -> AppResult<Option<Viewer>> {
        let key = credential.id();
        if !fresh
            && let Some(cached) = self.cache.lock().expect("session cache lock").get(&key)
            && cached.read_at.elapsed() < FRESH
        {
            return Ok(cached.viewer.clone());
        }
        let read_at = Instant::now();
        let mut conn = pool.get().await?;
        let found = match credential {
            Credential::Session(id) => super::model::session_user(&mut conn, id)
                .await?
                .map(|user| (user, credential)),
            // The key's scope as it is now, too.
            Credential::ApiKey { id, .. } => super::api_keys::key_user(&mut conn, id)
                .await?
                .map(|(scope, user)| (user, Credential::ApiKey { id, scope })),
        };
        let viewer = found.map(|(user, credential)| Viewer {
            user_id: user.id,
            role: user.role,
            credential,
        });
        let mut cache = self.cache.lock().expect("session cache lock");
        // Entries for sessions nobody asked about for a while go.
        if cache.len() > 10_000 {
            cache.retain(|_, c| c.read_at.elapsed() < FRESH);
        }
        cache.insert(
            key,
            Cached {
                user_id: viewer.as_ref().map(|v| v.user_id),
                viewer: viewer.clone(),
                read_at,
            },
        );
        Ok(viewer)
    }

    /// `user`'s sessions, role or active flag changed (on any instance): forget what is
    /// cached of them and tell the sockets.
    pub fn changed(&self, user: UserId) {
        self.cache
            .lock()
            .expect("session cache lock")
            .retain(|_, c| c.user_id.is_some_and(|u| u != user));
        let _ = self.changes.send(user);
    }

    /// The users whose sessions changed, as they change.
    pub fn changes(&self) -> broadcast::Receiver<UserId> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_forgets_the_users_sessions_and_is_announced() {
        let live = LiveSessions::default();
        let (ann, bob) = (UserId::new_random(), UserId::new_random());
        let mut changes = live.changes();
        for (session, user) in [(Uuid::new_v4(), ann), (Uuid::new_v4(), bob)] {
            live.cache.lock().unwrap().insert(
                session,
                Cached {
                    user_id: Some(user),
                    viewer: None,
                    read_at: Instant::now(),
                },
            );
        }
        live.changed(ann);
        let left: Vec<Option<UserId>> = live.cache.lock().unwrap().values().map(|c| c.user_id).collect();
        assert_eq!(left, vec![Some(bob)]);
        assert_eq!(changes.try_recv().unwrap(), ann);
    }
}
