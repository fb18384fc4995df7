//! What managers and admins do to accounts: block and unblock them, change their roles.
//! Who may call these is checked by guards on the resolvers; which account they may act
//! on is checked here, against the target's role.

use diesel_async::{AsyncConnection, RunQueryDsl};

use super::Viewer;
use super::model::{self, User};
use super::role::Role;
use crate::app::AppState;
use crate::db::types::UserId;
use crate::deliveries::model::{self as deliveries, Cancel};
use crate::error::{AppError, AppResult};

/// Role changes take this transaction-scoped advisory lock, so two admins demoting each
/// other at once cannot leave the service without one.
const ROLE_CHANGE_LOCK: i64 = 0x6d61_696c_726f_6c65; // "mailrole"

/// Blocks or unblocks an account. A manager may act on users only; an admin on anyone but
/// themselves. Blocking ends the account's sessions and cancels its pending deliveries;
/// its mailings start no new runs until it is unblocked.
pub async fn set_user_active(state: &AppState, viewer: &Viewer, id: UserId, active: bool) -> AppResult<User> {
    if id == viewer.user_id {
        return Err(AppError::bad_input("id", "you cannot block or unblock yourself"));
    }
    let mut conn = state.conn().await?;
    let user = conn
        .transaction::<_, AppError, _>(async |conn| {
            let target = model::find_user(conn, id).await?.ok_or(AppError::NotFound)?;
            let may = match viewer.role {
                Role::Admin => true,
                Role::Manager => target.role == Role::User,
                Role::User => false,
            };
            if !may {
                return Err(AppError::Forbidden);
            }
            let user = model::set_active(conn, id, active).await?;
            crate::events::notify(conn, &crate::events::Notice::Session { user: id }).await?;
            if !active {
                model::delete_sessions(conn, id, None).await?;
                super::api_keys::revoke_all(conn, id).await?;
                deliveries::cancel_pending(conn, Cancel::Owner(id)).await?;
            }
            Ok(user)
        })
        .await?;
    if active {
        // Its mailings may have runs due.
        state.dispatch_wakeup().notify_one();
    }
    Ok(user)
}

/// Gives an account another role (admins only, never their own); the last active admin
/// keeps theirs.
pub async fn set_user_role(state: &AppState, viewer: &Viewer, id: UserId, role: Role) -> AppResult<User> {
    if viewer.role != Role::Admin {
        return Err(AppError::Forbidden);
    }
    if id == viewer.user_id {
        return Err(AppError::bad_input("id", "you cannot change your own role"));
    }
    let mut conn = state.conn().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(ROLE_CHANGE_LOCK)
            .execute(conn)
            .await
            .map_err(AppError::from)?;
        let target = model::find_user(conn, id).await?.ok_or(AppError::NotFound)?;
        if target.role == Role::Admin && role != Role::Admin && model::other_active_admins(conn, id).await? == 0 {
            return Err(AppError::bad_input("role", "the last active admin cannot be demoted"));
        }
        let user = model::set_role(conn, id, role).await?;
        // Sockets of the account, on every instance, follow the new role.
        crate::events::notify(conn, &crate::events::Notice::Session { user: id }).await?;
        Ok(user)
    })
    .await
}
