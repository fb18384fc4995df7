//! What can go wrong, and the GraphQL error code each is.
//!
//! Resolvers use `?` on `AppResult` (and on database and pool errors); async-graphql keeps
//! the original error as the source of its own, and `graphql::error_codes` turns it into
//! the code the API contract promises in one place, through [`AppError::extend`].

use async_graphql::ErrorExtensions;

/// Every failure a user can be shown, one variant per `extensions.code` of the contract.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("sign in first")]
    Unauthenticated,
    #[error("your role does not allow this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// Bad input; `field` names the offending input (e.g. `input.email`).
    #[error("{message}")]
    BadUserInput { field: String, message: String },
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    #[error("verify your e-mail address first")]
    EmailNotVerified,
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// No database connection within DB_POOL_TIMEOUT (every one busy, or the database
    /// unreachable): worth trying again in a moment; HTTP 503 where nothing was answered.
    #[error("the service is busy; try again in a moment")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: logged with its context, shown only as "internal error".
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

/// The `Retry-After` of an unavailable answer: pool waits are short, so is the advice.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

impl AppError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        AppError::Conflict {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::Forbidden => "FORBIDDEN",
            AppError::NotFound => "NOT_FOUND",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        match self {
            AppError::Internal(source) => tracing::error!(error = format!("{source:#}"), "internal error"),
            AppError::Unavailable(source) => tracing::warn!(error = format!("{source:#}"), "answered unavailable"),
            _ => {}
        }
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                AppError::BadUserInput { field, .. } => ext.set("field", field.as_str()),
                AppError::Conflict { field: Some(field), .. } => ext.set("field", field.as_str()),
                AppError::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
                AppError::Unavailable(_) => ext.set("retryAfter", UNAVAILABLE_RETRY_AFTER_SECS),
                _ => {}
            }
        })
    }
}

/// The pool's error: no connection within DB_POOL_TIMEOUT.
pub type PoolError = deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>;

impl AppError {
    /// What a database error is, whether a resolver's `?` converts it or async-graphql
    /// holds it as an error's source (`graphql::error_codes`): the one mapping of both.
    /// A transaction PostgreSQL aborted to break a deadlock or a serialization conflict
    /// changed nothing and would succeed if tried again: that is an answer to retry, not an
    /// internal error (none is known to happen; see `deliveries::model::cancel_pending`).
    pub fn of_database(err: &diesel::result::Error) -> AppError {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => AppError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                AppError::Unavailable(anyhow::anyhow!("transaction aborted: {err}"))
            }
            Error::DatabaseError(_, info) if info.message().starts_with("deadlock detected") => {
                AppError::Unavailable(anyhow::anyhow!("transaction aborted: {err}"))
            }
            other => AppError::Internal(anyhow::anyhow!("database query failed: {other}")),
        }
    }

    /// What a pool error is (see [`AppError::of_database`]).
    pub fn of_pool(err: &PoolError) -> AppError {
        AppError::Unavailable(anyhow::anyhow!("no database connection: {err}"))
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        AppError::of_database(&err)
    }
}

impl From<PoolError> for AppError {
    fn from(err: PoolError) -> Self {
        AppError::of_pool(&err)
    }
}

/// A DataLoader shares one error among the fields that asked; each field gets its own
/// copy, with the same code.
impl From<std::sync::Arc<AppError>> for AppError {
    fn from(err: std::sync::Arc<AppError>) -> Self {
        match &*err {
            AppError::Unauthenticated => AppError::Unauthenticated,
            AppError::Forbidden => AppError::Forbidden,
            AppError::NotFound => AppError::NotFound,
            AppError::BadUserInput { field, message } => AppError::bad_input(field, message),
            AppError::Conflict { field, message } => AppError::conflict(field.as_deref(), message),
            AppError::EmailNotVerified => AppError::EmailNotVerified,
            AppError::RateLimited { retry_after_secs } => AppError::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            AppError::Unavailable(source) => AppError::Unavailable(anyhow::anyhow!("{source:#}")),
            AppError::Internal(source) => AppError::Internal(anyhow::anyhow!("{source:#}")),
        }
    }
}

impl From<&crate::db::page::BadPageArg> for AppError {
    fn from(err: &crate::db::page::BadPageArg) -> Self {
        AppError::bad_input(err.field, err.message.clone())
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err)
    }
}

/// Maps a unique violation on `constraint` to a CONFLICT naming `field`; anything else
/// stays a database error (realworld-axum-sqlx's `on_constraint`).
pub fn on_unique_violation(err: diesel::result::Error, constraint: &str, field: &str, message: &str) -> AppError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint) =>
        {
            AppError::conflict(Some(field), message)
        }
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_fields_reach_the_extensions() {
        let err = AppError::bad_input("input.email", "not an e-mail address").extend();
        let ext = err.extensions.expect("extensions set");
        assert_eq!(ext.get("code"), Some(&async_graphql::Value::from("BAD_USER_INPUT")));
        assert_eq!(ext.get("field"), Some(&async_graphql::Value::from("input.email")));
    }

    #[test]
    fn a_deadlock_victim_is_an_answer_to_retry_and_other_database_errors_are_internal() {
        use diesel::result::{DatabaseErrorKind, Error};
        let deadlock = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("deadlock detected".to_string()));
        assert_eq!(AppError::of_database(&deadlock).code(), "SERVICE_UNAVAILABLE");
        let conflict = Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new("could not serialize access".to_string()),
        );
        assert_eq!(AppError::of_database(&conflict).code(), "SERVICE_UNAVAILABLE");
        let other = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("division by zero".to_string()));
        assert_eq!(AppError::of_database(&other).code(), "INTERNAL_SERVER_ERROR");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = AppError::from(anyhow::anyhow!("password=hunter2 leaked")).extend();
        assert_eq!(err.message, "internal error");
    }
}
