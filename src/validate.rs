//! Input checks shared by the domains. Each names the offending field, so the API can put
//! the error next to it (`extensions.field`).

use crate::error::{AppError, AppResult};

/// A syntactically valid address (RFC 5321 as lettre parses it), trimmed, ≤ 254 bytes.
pub fn email(field: &str, value: &str) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::bad_input(field, "enter an e-mail address"));
    }
    if value.len() > 254 || value.parse::<lettre::Address>().is_err() {
        return Err(AppError::bad_input(
            field,
            format!("`{value}` is not a valid e-mail address"),
        ));
    }
    Ok(value.to_owned())
}

/// Trimmed text of 1 to `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::bad_input(field, "must not be empty"));
    }
    limited_text(field, value, max)
}

/// Text of at most `max` characters (kept as written).
pub fn limited_text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let count = value.chars().count();
    if count > max {
        return Err(AppError::bad_input(
            field,
            format!("is {count} characters long; at most {max} are allowed"),
        ));
    }
    Ok(value.to_owned())
}

/// 10 to 128 characters, and not the account's own e-mail address.
pub fn password(field: &str, password: &str, email: &str) -> AppResult<()> {
    let count = password.chars().count();
    if count < 10 {
        return Err(AppError::bad_input(field, "use at least 10 characters"));
    }
    if count > 128 {
        return Err(AppError::bad_input(field, "use at most 128 characters"));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(AppError::bad_input(field, "must not be your e-mail address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: AppError) -> String {
        match err {
            AppError::BadUserInput { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email("email", " ann@example.com ").unwrap(), "ann@example.com");
        assert_eq!(
            field_of(email("input.email", "not-an-address").unwrap_err()),
            "input.email"
        );
        assert!(email("email", "").is_err());
        assert!(email("email", &format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn texts_and_passwords() {
        assert!(required_text("name", "   ", 10).is_err());
        assert!(required_text("name", "Анна", 4).is_ok());
        assert!(required_text("name", "Анна!", 4).is_err());
        assert!(password("password", "short", "a@b.c").is_err());
        assert!(password("password", "ann@example.com", "Ann@Example.com").is_err());
        assert!(password("password", &"x".repeat(129), "a@b.c").is_err());
        assert!(password("password", "long enough pass", "a@b.c").is_ok());
    }
}
