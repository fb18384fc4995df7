//! The account flows, shared by the GraphQL resolvers, the HTTP pages and the command line.

use std::net::IpAddr;

use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::model::{self, NewUser, TokenPurpose, User};
use super::role::Role;
use super::{Viewer, throttle, tokens};
use crate::app::AppState;
use crate::config::Registration;
use crate::deliveries::model::{self as deliveries, Cancel};
use crate::error::{AppError, AppResult, on_unique_violation};
use crate::jobs::account_mail;
use crate::validate;

/// Counts a request that mails an address (register, resendVerification,
/// requestPasswordReset) against the limits per client IP and per address.
async fn limit_mailing_requests(state: &AppState, ip: Option<IpAddr>, email: &str) -> AppResult<()> {
    let limits = &state.config().accounts;
    let mut conn = state.conn().await?;
    if let Some(ip) = ip {
        throttle::hit(&mut conn, &throttle::ip_key("mail", ip), limits.mail_limit_ip).await?;
    }
    throttle::hit(
        &mut conn,
        &throttle::email_key("mail", email),
        limits.mail_limit_address,
    )
    .await
}

/// Runs account-mail work after the answer is decided, so the answer (and its timing) is
/// the same whether or not the address has an account. Failures are logged.
fn in_background<F, Fut>(state: &AppState, what: &'static str, work: F)
where
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = AppResult<()>> + Send + 'static,
{
    let state = state.clone();
    tokio::spawn(async move {
        let wakeup = state.jobs_queued().clone();
        match work(state).await {
            Ok(()) => wakeup.notify_one(),
            Err(err) => tracing::warn!(error = %err, what, "account mail not queued"),
        }
    });
}

/// Creates an unverified account and mails a verification link. For an address that is
/// taken, mails its owner instead: the caller learns nothing either way.
pub async fn register(
    state: &AppState,
    ip: Option<IpAddr>,
    email: &str,
    password: &str,
    full_name: &str,
) -> AppResult<()> {
    if state.config().accounts.registration == Registration::Closed {
        return Err(AppError::Forbidden);
    }
    let email = validate::email("email", email)?;
    let full_name = validate::required_line("fullName", full_name, 200)?;
    validate::password("password", password, &email)?;
    limit_mailing_requests(state, ip, &email).await?;
    // Hash before looking the address up, so both answers take as long.
    let hash = state.passwords().hash(password).await?;

    let config = state.config();
    let mut conn = state.conn().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        if let Some((owner, _)) = model::find_by_email(conn, &email).await? {
            let body = format!(
                "Hello {},\n\n\
                 someone, perhaps you, tried to create a mailwarm account\n\
                 with this address, which already has one.\n\n\
                 If it was you, sign in at {}\n\
                 (you can reset your password there).\n\n\
                 If it was not, you can ignore this mail.\n",
                owner.full_name,
                config.http.public_url()
            );
            account_mail::enqueue(
                conn,
                Some(owner.id),
                &owner.email,
                "Someone tried to sign up with your address",
                &body,
            )
            .await?;
            return Ok(());
        }
        let new = NewUser {
            email: &email,
            full_name: &full_name,
            password_hash: &hash,
            role: Role::User,
            email_verified_at: None,
        };
        let user = match model::insert_user(conn, &new).await {
            Ok(user) => user,
            // Registered by a concurrent request a moment ago: the same answer as "taken".
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        send_verification(state, conn, &user).await
    })
    .await?;
    state.jobs_queued().notify_one();
    Ok(())
}

/// Queues a fresh verification link for `user`.
pub async fn send_verification(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    user: &User,
) -> AppResult<()> {
    let config = state.config();
    let (token, hash) = tokens::new_link_token();
    model::create_email_token(
        conn,
        user.id,
        TokenPurpose::VerifyEmail,
        &hash,
        config.accounts.verify_token_ttl,
    )
    .await?;
    let link = config.http.link("verify-email", &[("token", &token)]);
    let hours = config.accounts.verify_token_ttl.as_secs().div_ceil(3600);
    let body = format!(
        "Hello {},\n\n\
         please confirm your e-mail address for mailwarm by opening\n\
         this link (it works once, for {hours} hours):\n\n\
         {link}\n\n\
         If you did not sign up for mailwarm, ignore this mail.\n",
        user.full_name
    );
    account_mail::enqueue(
        conn,
        Some(user.id),
        &user.email,
        "Confirm your e-mail address for mailwarm",
        &body,
    )
    .await?;
    Ok(())
}

/// Redeems a verification token. Unknown, used and expired tokens get one generic error.
pub async fn verify_email(state: &AppState, token: &str) -> AppResult<()> {
    let mut conn = state.conn().await?;
    let user_id = model::redeem_email_token(&mut conn, TokenPurpose::VerifyEmail, &tokens::hash_token(token.trim()))
        .await?
        .ok_or_else(|| AppError::bad_input("token", "this link is invalid, already used or expired"))?;
    model::mark_verified(&mut conn, user_id).await?;
    Ok(())
}

/// Checks the credentials and opens a session; returns its token (shown once) and the user.
/// Failed logins are counted per address (whether or not it has an account) and per client
/// IP; past either limit every login of that address or IP is RATE_LIMITED until the window
/// ends. A successful login clears its address's count.
pub async fn login(state: &AppState, ip: Option<IpAddr>, email: &str, password: &str) -> AppResult<(String, User)> {
    let limits = &state.config().accounts;
    // Whatever is typed is looked up, but nothing PostgreSQL cannot hold (NUL).
    let email = validate::line("email", email, 1_000)?;
    let email = email.as_str();
    let account_key = throttle::email_key("login", email);
    let ip_key = ip.map(|ip| throttle::ip_key("login", ip));
    let mut conn = state.conn().await?;
    throttle::check(&mut conn, &account_key, limits.login_limit_account).await?;
    if let Some(key) = &ip_key {
        throttle::check(&mut conn, key, limits.login_limit_ip).await?;
    }
    let found = model::find_by_email(&mut conn, email.trim()).await?;
    drop(conn); // not held while hashing
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    // Verified even for unknown addresses, so timing does not tell them apart.
    let matches = state.passwords().verify(password, hash).await?;
    let mut conn = state.conn().await?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            // Counting only: this attempt is answered UNAUTHENTICATED; the next one is
            // refused by the checks above.
            let _ = throttle::hit(&mut conn, &account_key, limits.login_limit_account).await;
            if let Some(key) = &ip_key {
                let _ = throttle::hit(&mut conn, key, limits.login_limit_ip).await;
            }
            return Err(AppError::Unauthenticated);
        }
    };
    throttle::clear(&mut conn, &account_key).await?;
    if !user.is_active {
        return Err(AppError::Forbidden);
    }
    if user.email_verified_at.is_none() {
        return Err(AppError::EmailNotVerified);
    }
    let (token, hash) = tokens::new_session_token();
    model::create_session(&mut conn, user.id, &hash, state.config().accounts.session_ttl).await?;
    Ok((token, user))
}

/// `server create-user`: an account that is verified at once, with the given role.
pub async fn create_user(
    state: &AppState,
    email: &str,
    full_name: &str,
    password: &str,
    role: Role,
) -> AppResult<User> {
    let email = validate::email("email", email)?;
    let full_name = validate::required_line("fullName", full_name, 200)?;
    validate::password("password", password, &email)?;
    let hash = state.passwords().hash(password).await?;
    let mut conn = state.conn().await?;
    let new = NewUser {
        email: &email,
        full_name: &full_name,
        password_hash: &hash,
        role,
        email_verified_at: Some(chrono::Utc::now()),
    };
    model::insert_user(&mut conn, &new)
        .await
        .map_err(|e| on_unique_violation(e, "users_email_key", "email", "an account with this address exists"))
}

const INVALID_LINK: &str = "this link is invalid, already used or expired";

/// Mails a reset link when the address has a live, active account with fewer than three
/// links outstanding. The caller's answer does not depend on any of that.
pub async fn request_password_reset(state: &AppState, ip: Option<IpAddr>, email: &str) -> AppResult<()> {
    let email = validate::email("email", email)?;
    limit_mailing_requests(state, ip, &email).await?;
    in_background(state, "password reset", move |state| async move {
        let mut conn = state.conn().await?;
        let Some((user, _)) = model::find_by_email(&mut conn, &email).await? else {
            return Ok(());
        };
        if !user.is_active {
            return Ok(());
        }
        let config = state.config();
        let (token, hash) = tokens::new_link_token();
        let ttl = config.accounts.reset_token_ttl;
        let link = config.http.link("reset-password", &[("token", &token)]);
        let minutes = ttl.as_secs().div_ceil(60);
        let body = format!(
            "Hello {},\n\n\
             someone, perhaps you, asked to reset the password of your\n\
             mailwarm account. To choose a new one, open this link\n\
             (it works once, for {minutes} minutes):\n\n\
             {link}\n\n\
             If you did not ask for this, ignore this mail: your password\n\
             stays as it is.\n",
            user.full_name
        );
        conn.transaction::<_, AppError, _>(async |conn| {
            // Counted under the account's row lock: concurrent requests take turns.
            model::lock_user(conn, user.id).await?;
            if model::outstanding_tokens(conn, user.id, TokenPurpose::ResetPassword).await? >= 3 {
                return Ok(());
            }
            model::create_email_token(conn, user.id, TokenPurpose::ResetPassword, &hash, ttl).await?;
            account_mail::enqueue(conn, Some(user.id), &user.email, "Reset your mailwarm password", &body).await?;
            Ok(())
        })
        .await
    });
    Ok(())
}

/// Sets a new password through a mailed reset link: every session of the account ends,
/// nobody is signed in, and the owner gets a notice. Unknown, used and expired tokens get
/// one generic error.
pub async fn reset_password(state: &AppState, token: &str, new_password: &str) -> AppResult<()> {
    let token_hash = tokens::hash_token(token.trim());
    let mut conn = state.conn().await?;
    let user = model::email_token_user(&mut conn, TokenPurpose::ResetPassword, &token_hash)
        .await?
        .ok_or_else(|| AppError::bad_input("token", INVALID_LINK))?;
    drop(conn); // not held while hashing
    validate::password("newPassword", new_password, &user.email)?;
    let hash = state.passwords().hash(new_password).await?;
    let mut conn = state.conn().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let redeemed = model::redeem_email_token(conn, TokenPurpose::ResetPassword, &token_hash).await?;
        if redeemed != Some(user.id) {
            return Err(AppError::bad_input("token", INVALID_LINK));
        }
        model::set_password(conn, user.id, &hash).await?;
        model::delete_sessions(conn, user.id, None).await?;
        crate::events::notify(conn, &crate::events::Notice::Session { user: user.id }).await?;
        // The link arrived, so the address is the owner's.
        model::mark_verified(conn, user.id).await?;
        password_changed_notice(state, conn, &user).await
    })
    .await?;
    state.jobs_queued().notify_one();
    Ok(())
}

/// Mails a fresh verification link when the address has an unverified account.
pub async fn resend_verification(state: &AppState, ip: Option<IpAddr>, email: &str) -> AppResult<()> {
    let email = validate::email("email", email)?;
    limit_mailing_requests(state, ip, &email).await?;
    in_background(state, "verification", move |state| async move {
        let mut conn = state.conn().await?;
        match model::find_by_email(&mut conn, &email).await? {
            Some((user, _)) if user.email_verified_at.is_none() && user.is_active => {
                send_verification(&state, &mut conn, &user).await
            }
            _ => Ok(()),
        }
    });
    Ok(())
}

/// Checks the signed-in account's password (for changing it or deleting the account);
/// tries are counted like failed logins, so a stolen session cannot guess it.
async fn confirm_password(state: &AppState, viewer: &Viewer, field: &str, password: &str) -> AppResult<User> {
    let key = format!("password:user:{}", viewer.user_id);
    let limit = state.config().accounts.login_limit_account;
    let mut conn = state.conn().await?;
    throttle::check(&mut conn, &key, limit).await?;
    let user = model::find_user(&mut conn, viewer.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let hash = model::password_hash(&mut conn, viewer.user_id).await?;
    drop(conn);
    if !state.passwords().verify(password, hash).await? {
        let mut conn = state.conn().await?;
        let _ = throttle::hit(&mut conn, &key, limit).await;
        return Err(AppError::bad_input(field, "this is not your password"));
    }
    Ok(user)
}

/// Changes the signed-in account's password; its other sessions end.
pub async fn change_password(
    state: &AppState,
    viewer: &Viewer,
    current_password: &str,
    new_password: &str,
) -> AppResult<()> {
    let user = confirm_password(state, viewer, "currentPassword", current_password).await?;
    validate::password("newPassword", new_password, &user.email)?;
    let hash = state.passwords().hash(new_password).await?;
    let mut conn = state.conn().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        model::set_password(conn, user.id, &hash).await?;
        model::delete_sessions(conn, user.id, viewer.session_id()).await?;
        crate::events::notify(conn, &crate::events::Notice::Session { user: user.id }).await?;
        password_changed_notice(state, conn, &user).await
    })
    .await?;
    state.jobs_queued().notify_one();
    Ok(())
}

async fn password_changed_notice(state: &AppState, conn: &mut AsyncPgConnection, user: &User) -> AppResult<()> {
    let body = format!(
        "Hello {},\n\n\
         the password of your mailwarm account was just changed, and\n\
         every other sign-in session ended.\n\n\
         If this was not you, reset your password at once:\n\
         {}\n",
        user.full_name,
        state.config().http.public_url()
    );
    account_mail::enqueue(
        conn,
        Some(user.id),
        &user.email,
        "Your mailwarm password was changed",
        &body,
    )
    .await?;
    Ok(())
}

/// Deletes the signed-in account: its mailings stop (pending deliveries CANCELLED), its
/// personal data is removed, and what it sent stays counted, anonymously.
pub async fn delete_account(state: &AppState, viewer: &Viewer, password: &str) -> AppResult<()> {
    let user = confirm_password(state, viewer, "password", password).await?;
    if user.role == Role::Admin {
        let mut conn = state.conn().await?;
        if model::other_active_admins(&mut conn, user.id).await? == 0 {
            return Err(AppError::bad_input(
                "password",
                "you are the last active admin; make someone else admin first",
            ));
        }
    }
    let mut conn = state.conn().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        crate::mailings::model::complete_all_of(conn, user.id).await?;
        deliveries::cancel_pending(conn, Cancel::Owner(user.id)).await?;
        model::anonymise(conn, user.id).await?;
        super::api_keys::revoke_all(conn, user.id).await?;
        crate::events::notify(conn, &crate::events::Notice::Session { user: user.id }).await?;
        Ok(())
    })
    .await
}
