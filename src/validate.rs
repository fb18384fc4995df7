//! Input rules shared by the API, the CSV import and every update: one function per kind
//! of value, each naming the offending field so the API can put the error next to it
//! (`extensions.field`). What passes here can be stored (PostgreSQL refuses NUL) and put
//! into a mail (no line breaks where a header goes).
//!
//! - single-line text (names, subjects, titles): no control characters at all (CR, LF,
//!   NUL, TAB, ESC, DEL, ...) and no Unicode line or paragraph separators;
//! - multi-line text (bodies, comments): line ends are stored as `\n` (CRLF and CR are
//!   turned into it); of the control characters only `\n` and `\t` are allowed;
//! - e-mail addresses: `mail::address::parse`;
//! - a client's attributes: a JSON object of at most [`MAX_ATTRIBUTES`] keys of letters,
//!   digits and `_`, each a string (a single line), a finite number or a boolean.

use crate::error::{AppError, AppResult};

/// The longest server reply, report diagnostic or error kept in the log.
pub const MAX_LOG_TEXT: usize = 1024;

/// A reply or reason as the attempt log keeps it: no NUL (PostgreSQL's text cannot hold
/// it) or other control characters, at most 1 KiB, cut at a character boundary.
pub fn log_text(text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A deliverable address (see `mail::address`), trimmed, at most 254 bytes.
pub fn email(field: &str, value: &str) -> AppResult<String> {
    crate::mail::address::parse(value)
        .map(|address| address.text)
        .map_err(|message| AppError::bad_input(field, message))
}

/// Trimmed single-line text of 1 to `max` characters.
pub fn required_line(field: &str, value: &str, max: usize) -> AppResult<String> {
    let value = line(field, value, max)?;
    if value.is_empty() {
        return Err(AppError::bad_input(field, "must not be empty"));
    }
    Ok(value)
}

/// Trimmed single-line text of at most `max` characters (may be empty).
pub fn line(field: &str, value: &str, max: usize) -> AppResult<String> {
    let value = value.trim();
    if let Some(c) = value.chars().find(|c| is_line_break(*c)) {
        return Err(AppError::bad_input(
            field,
            format!("must be a single line (it holds {})", describe(c)),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(AppError::bad_input(
            field,
            format!("must not contain control characters ({})", describe(c)),
        ));
    }
    limited(field, value, max)
}

/// Multi-line text of 1 to `max` characters (not only blanks), line ends made `\n`.
pub fn required_text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let value = text(field, value, max)?;
    if value.trim().is_empty() {
        return Err(AppError::bad_input(field, "must not be empty"));
    }
    Ok(value)
}

/// Multi-line text of at most `max` characters, line ends made `\n`; only `\n` and `\t`
/// among the control characters.
pub fn text(field: &str, value: &str, max: usize) -> AppResult<String> {
    // Browsers send CRLF from a textarea in forms.
    let value = crate::mail::message::normalise_line_ends(value);
    if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AppError::bad_input(
            field,
            format!(
                "must not contain control characters other than line breaks and tabs ({})",
                describe(c)
            ),
        ));
    }
    limited(field, &value, max)
}

/// Most attributes one client may have.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute key, and longest string value.
const MAX_ATTRIBUTE_KEY: usize = 64;
const MAX_ATTRIBUTE_TEXT: usize = 500;

/// A client's own fields (company, plan, city...): an object whose keys are letters,
/// digits and `_` (not starting with a digit: templates name them as
/// `client.attributes.<key>`) and whose values are single-line strings, finite numbers or
/// booleans. `field` is the input's name; errors name `field.<key>`.
pub fn attributes(field: &str, value: &serde_json::Value) -> AppResult<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let Value::Object(object) = value else {
        return Err(AppError::bad_input(field, "must be a JSON object of key: value"));
    };
    if object.len() > MAX_ATTRIBUTES {
        return Err(AppError::bad_input(
            field,
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    let mut checked = serde_json::Map::new();
    for (key, value) in object {
        attribute_key(field, key)?;
        let at = format!("{field}.{key}");
        let value = match value {
            Value::String(text) => Value::String(line(&at, text, MAX_ATTRIBUTE_TEXT)?),
            Value::Number(number) if number.as_f64().is_some_and(f64::is_finite) => Value::Number(number.clone()),
            Value::Bool(flag) => Value::Bool(*flag),
            _ => return Err(AppError::bad_input(at, "must be a string, a number or a boolean")),
        };
        checked.insert(key.clone(), value);
    }
    Ok(checked)
}

/// An attribute's name: 1 to 64 letters, digits and `_`, not starting with a digit.
pub fn attribute_key(field: &str, key: &str) -> AppResult<()> {
    let well_formed = !key.is_empty()
        && key.len() <= MAX_ATTRIBUTE_KEY
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if well_formed {
        Ok(())
    } else {
        Err(AppError::bad_input(
            field,
            format!(
                "attribute names are 1 to {MAX_ATTRIBUTE_KEY} letters, digits and _, not starting with a digit ({:?} is not)",
                key.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// A search string: any text, but no control characters (it goes into a query).
pub fn search(field: &str, value: &str) -> AppResult<String> {
    line(field, value, 200)
}

/// CR, LF, and the Unicode breaks a mail reader may also show as a new line.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

fn describe(c: char) -> String {
    match c {
        '\r' => "a carriage return".into(),
        '\n' => "a line feed".into(),
        '\0' => "a NUL character".into(),
        '\t' => "a tab".into(),
        other => format!("U+{:04X}", u32::from(other)),
    }
}

fn limited(field: &str, value: &str, max: usize) -> AppResult<String> {
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
    fn single_lines_refuse_every_control_character() {
        assert_eq!(required_line("name", "  Анна Lee ", 10).unwrap(), "Анна Lee");
        assert!(required_line("name", "   ", 10).is_err());
        assert!(required_line("name", "Анна!", 4).is_err());
        for bad in [
            "a\rb",
            "a\nb",
            "a\0b",
            "a\tb",
            "a\u{1b}[31mb",
            "a\u{7}b",
            "a\u{7f}b",
            "a\u{2028}b",
            "a\u{85}b",
        ] {
            let err = required_line("input.fullName", bad, 100).unwrap_err();
            assert_eq!(field_of(err), "input.fullName", "{bad:?}");
        }
        assert_eq!(line("c", "", 5).unwrap(), "");
    }

    #[test]
    fn multi_line_text_keeps_lf_and_tab_only() {
        assert_eq!(text("body", "a\r\nb\rc\n\td", 100).unwrap(), "a\nb\nc\n\td");
        assert!(text("body", "a\0b", 100).is_err());
        assert!(text("body", "a\u{1b}b", 100).is_err());
        assert!(text("body", "a\u{7f}b", 100).is_err());
        assert!(required_text("body", " \n\t", 100).is_err());
        assert!(text("body", &"x".repeat(101), 100).is_err());
    }

    #[test]
    fn passwords() {
        assert!(password("password", "short", "a@b.c").is_err());
        assert!(password("password", "ann@example.com", "Ann@Example.com").is_err());
        assert!(password("password", &"x".repeat(129), "a@b.c").is_err());
        assert!(password("password", "long enough pass", "a@b.c").is_ok());
    }
}
