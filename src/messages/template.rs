//! The template language of subjects and bodies: minijinja (Jinja2 syntax), sandboxed. No
//! loader is set, so a template reads no file and no URL; every template runs on a fuel
//! budget, so none loops for ever; the output is bounded by MAX_MESSAGE_SIZE while it is
//! written, so none fills memory.
//!
//! Variables: `client.email`, `client.full_name`, `client.comment`,
//! `client.attributes.<key>`, `unsubscribe_url`, `mailing.id`, `run.date` (the run's day in
//! the mailing's time zone), with Jinja's filters (`default`, `upper`, ...). The
//! placeholders of the first version, `{{full_name}}`, `{{email}}` and
//! `{{unsubscribe_url}}`, are top-level names, so stored messages keep working. A name that
//! is not defined renders as nothing (`{{ client.attributes.plan | default("free") }}`).

use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::error::{AppError, AppResult};

/// The instructions one rendering may run (a loop step, a filter call... each costs some):
/// far above what a newsletter needs, far below what would stall a dispatcher.
pub const FUEL: u64 = 200_000;

/// What a template may read for one recipient.
#[derive(Debug, Serialize)]
pub struct Values<'a> {
    pub client: ClientValues<'a>,
    pub unsubscribe_url: &'a str,
    pub mailing: MailingValues,
    pub run: RunValues,
    /// The first version's placeholders, kept as top-level names.
    pub full_name: &'a str,
    pub email: &'a str,
}

impl<'a> Values<'a> {
    /// The values for one recipient, the first version's names included.
    pub fn new(client: ClientValues<'a>, unsubscribe_url: &'a str, mailing_id: String, date: String) -> Values<'a> {
        Values {
            full_name: client.full_name,
            email: client.email,
            client,
            unsubscribe_url,
            mailing: MailingValues { id: mailing_id },
            run: RunValues { date },
        }
    }
}

/// A message rendered for one recipient: subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Serialize)]
pub struct ClientValues<'a> {
    pub email: &'a str,
    pub full_name: &'a str,
    pub comment: &'a str,
    pub attributes: &'a serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct MailingValues {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct RunValues {
    /// `YYYY-MM-DD` in the mailing's time zone.
    pub date: String,
}

/// A message's subject and body, compiled once (per run) and rendered per recipient.
pub struct MessageTemplates {
    env: Environment<'static>,
}

/// Why a template cannot be compiled: the message and its line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Rendering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendering::TooLarge => f.write_str("the message would be more than MAX_MESSAGE_SIZE"),
            Rendering::Failed(why) => f.write_str(why),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // Text is text: no HTML escaping here (HTML messages set their own).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A body's last line break is the author's.
    env.set_keep_trailing_newline(true);
    env
}

fn invalid(err: &minijinja::Error) -> Invalid {
    Invalid {
        line: err.line(),
        message: err.detail().map_or_else(|| err.kind().to_string(), str::to_owned),
    }
}

impl MessageTemplates {
    pub fn compile(subject: &str, body: &str) -> Result<MessageTemplates, (&'static str, Invalid)> {
        let mut env = environment();
        env.add_template_owned("subject", subject.to_owned())
            .map_err(|e| ("subject", invalid(&e)))?;
        env.add_template_owned("body", body.to_owned())
            .map_err(|e| ("body", invalid(&e)))?;
        Ok(MessageTemplates { env })
    }

    /// Subject and body for one recipient.
    pub fn render_both(&self, values: &Values<'_>, max_bytes: usize) -> Result<Rendered, Rendering> {
        Ok(Rendered {
            subject: self.subject(values, max_bytes)?,
            body: self.body(values, max_bytes)?,
        })
    }

    pub fn subject(&self, values: &Values<'_>, max_bytes: usize) -> Result<String, Rendering> {
        self.render("subject", values, max_bytes)
    }

    pub fn body(&self, values: &Values<'_>, max_bytes: usize) -> Result<String, Rendering> {
        self.render("body", values, max_bytes)
    }

    fn render(&self, name: &str, values: &Values<'_>, max_bytes: usize) -> Result<String, Rendering> {
        let template = self.env.get_template(name).expect("compiled in `compile`");
        let mut out = Bounded {
            text: Vec::new(),
            max: max_bytes,
        };
        match template.render_captured_to(values, &mut out) {
            Ok(_) => Ok(String::from_utf8(out.text).expect("templates write UTF-8")),
            Err(err) if err.kind() == ErrorKind::WriteFailure => Err(Rendering::TooLarge),
            Err(err) if err.kind() == ErrorKind::OutOfFuel => Err(Rendering::Failed(format!(
                "the {name} template ran out of fuel (more than {FUEL} steps)"
            ))),
            Err(err) => Err(Rendering::Failed(format!(
                "the {name} template failed: {}",
                invalid(&err)
            ))),
        }
    }
}

/// Why a rendering produced no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendering {
    /// Over the byte limit it was given.
    TooLarge,
    /// A template error (a filter on the wrong value, out of fuel...), said for the log.
    Failed(String),
}

/// An output that refuses to grow past `max` bytes.
struct Bounded {
    text: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + bytes.len() > self.max {
            return Err(std::io::Error::other("over the size limit"));
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A template given to the API: BAD_USER_INPUT naming `field` and the line, if it does not
/// compile.
pub fn check(field: &str, source: &str) -> AppResult<()> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|err| AppError::bad_input(field, format!("the template does not parse: {}", invalid(&err))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(name: &'a str, attributes: &'a serde_json::Value) -> Values<'a> {
        let client = ClientValues {
            email: "ann@example.com",
            full_name: name,
            comment: "met at the fair",
            attributes,
        };
        Values::new(client, "https://x.example/u", "m-1".into(), "2030-01-31".into())
    }

    #[test]
    fn old_placeholders_and_new_variables_are_filled_once() {
        let attributes = serde_json::json!({ "plan": "pro", "seats": 12 });
        let t = MessageTemplates::compile(
            "Hi {{full_name}}",
            "{{ email }} {{unsubscribe_url}} {{ client.attributes.plan }} {{ client.attributes.seats + 1 }} \
             {{ client.attributes.city | default('nowhere') }} {{ run.date }} {{ client.comment }}\n",
        )
        .unwrap();
        // A value that looks like a template is text.
        let v = values("{{ email }}", &attributes);
        assert_eq!(t.subject(&v, 1000).unwrap(), "Hi {{ email }}");
        assert_eq!(
            t.body(&v, 1000).unwrap(),
            "ann@example.com https://x.example/u pro 13 nowhere 2030-01-31 met at the fair\n"
        );
    }

    #[test]
    fn a_bad_template_is_refused_with_its_line_and_a_runaway_one_stops() {
        let err = check("input.body", "Hello\n{% if %}").unwrap_err();
        assert!(
            matches!(&err, AppError::BadUserInput { field, message } if field == "input.body" && message.contains("line 2")),
            "{err:?}"
        );
        assert!(check("input.body", "{{ unclosed").is_err());
        assert!(check("input.body", "Hello {{ full_name }}").is_ok());
        // Nothing reads files: there is no include, import or extends at all.
        for source in [
            "{% include 'etc/passwd' %}",
            "{% import 'x' as y %}",
            "{% extends 'x' %}",
        ] {
            assert!(MessageTemplates::compile("s", source).is_err(), "{source}");
        }
        let attributes = serde_json::json!({});
        // Out of fuel, not stuck.
        let t = MessageTemplates::compile(
            "s",
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(
            matches!(t.body(&values("A", &attributes), usize::MAX), Err(Rendering::Failed(why)) if why.contains("fuel"))
        );
        // Over the size limit while writing, not after.
        let t = MessageTemplates::compile("s", "{{ full_name }}{{ full_name }}").unwrap();
        assert_eq!(t.body(&values("abc", &attributes), 5), Err(Rendering::TooLarge));
        assert_eq!(t.body(&values("abc", &attributes), 6).unwrap(), "abcabc");
    }
}
