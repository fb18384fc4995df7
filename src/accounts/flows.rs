//! The account flows, shared by the GraphQL resolvers, the HTTP pages and the command line.

use diesel_async::AsyncConnection;

use super::graphql::Role;
use super::model::{self, NewUser, TokenPurpose, User};
use super::tokens;
use crate::app::AppState;
use crate::error::{AppError, AppResult, on_unique_violation};
use crate::mail::queue;
use crate::validate;

/// Creates an unverified account and mails a verification link. For an address that is
/// taken, mails its owner instead: the caller learns nothing either way.
pub async fn register(state: &AppState, email: &str, password: &str, full_name: &str) -> AppResult<()> {
    let email = validate::email("email", email)?;
    let full_name = validate::required_text("fullName", full_name, 200)?;
    validate::password("password", password, &email)?;
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
            queue::enqueue(
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
            role: "user",
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
    state.account_mail_queued().notify_one();
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
    queue::enqueue(
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
pub async fn login(state: &AppState, email: &str, password: &str) -> AppResult<(String, User)> {
    let mut conn = state.conn().await?;
    let found = model::find_by_email(&mut conn, email.trim()).await?;
    drop(conn); // not held while hashing
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    // Verified even for unknown addresses, so timing does not tell them apart.
    let matches = state.passwords().verify(password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(AppError::Unauthenticated),
    };
    if !user.is_active {
        return Err(AppError::Forbidden);
    }
    if user.email_verified_at.is_none() {
        return Err(AppError::EmailNotVerified);
    }
    let (token, hash) = tokens::new_session_token();
    let mut conn = state.conn().await?;
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
    let full_name = validate::required_text("fullName", full_name, 200)?;
    validate::password("password", password, &email)?;
    let hash = state.passwords().hash(password).await?;
    let mut conn = state.conn().await?;
    let new = NewUser {
        email: &email,
        full_name: &full_name,
        password_hash: &hash,
        role: role.as_db(),
        email_verified_at: Some(chrono::Utc::now()),
    };
    model::insert_user(&mut conn, &new)
        .await
        .map_err(|e| on_unique_violation(e, "users_email_key", "email", "an account with this address exists"))
}
