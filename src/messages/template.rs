//! The template language of messages: minijinja (Jinja2 syntax), sandboxed. No loader is
//! set, so a template reads no file and no URL; every template runs on a fuel budget, so
//! none loops for ever; each output is bounded by MAX_MESSAGE_SIZE while it is written, so
//! none fills memory.
//!
//! Variables: `client.email`, `client.full_name`, `client.comment`,
//! `client.attributes.<key>`, `unsubscribe_url`, `web_view_url`, `mailing.id`, `run.date`
//! (the run's day in the mailing's time zone), with Jinja's filters (`default`, `upper`,
//! ...). The placeholders of the first version, `{{full_name}}`, `{{email}}` and
//! `{{unsubscribe_url}}`, are top-level names, so stored messages keep working. A name that
//! is not defined renders as nothing (`{{ client.attributes.plan | default("free") }}`).
//!
//! A message is its subject, its body (TEXT, MARKDOWN or HTML), an optional hand-written
//! text part and an optional layout (HTML with `{{ content }}`). Values are escaped for
//! where they land: HTML-escaped in HTML bodies and layouts, HTML- and Markdown-escaped in
//! Markdown bodies (a client named `<script>` or `*bold*` is text), as they are in
//! subjects and text. [`MessageTemplates::render`] does the rest (`super::html`). An HTML
//! message's whole document (layout, body, footer) is compiled once more as one template
//! with its CSS already inlined (`html::inline_css_in_template`), so a delivery only
//! renders it; where that cannot be done, each mail is inlined after rendering.

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State};
use serde::Serialize;

use super::html;
use super::model::MessageFormat;
use crate::error::{AppError, AppResult};

/// The instructions one rendering may run (a loop step, a filter call... each costs some):
/// far above what a newsletter needs, far below what would stall a dispatcher.
pub const FUEL: u64 = 200_000;

/// What a template may read for one recipient.
#[derive(Debug, Serialize)]
pub struct Values<'a> {
    pub client: ClientValues<'a>,
    pub unsubscribe_url: &'a str,
    pub web_view_url: &'a str,
    pub mailing: MailingValues,
    pub run: RunValues,
    /// The first version's placeholders, kept as top-level names.
    pub full_name: &'a str,
    pub email: &'a str,
}

/// The links a message carries for one recipient.
pub struct Links<'a> {
    pub unsubscribe_url: &'a str,
    pub web_view_url: &'a str,
}

impl<'a> Values<'a> {
    /// The values for one recipient, the first version's names included.
    pub fn new(client: ClientValues<'a>, links: Links<'a>, mailing_id: String, date: String) -> Values<'a> {
        Values {
            full_name: client.full_name,
            email: client.email,
            client,
            unsubscribe_url: links.unsubscribe_url,
            web_view_url: links.web_view_url,
            mailing: MailingValues { id: mailing_id },
            run: RunValues { date },
        }
    }
}

/// A message rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    /// The text/plain part (the whole message for TEXT).
    pub text: String,
    /// The text/html part: a whole document, CSS inlined; None for TEXT.
    pub html: Option<String>,
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

/// What a message is made of, as stored (or as a run snapshotted it).
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub format: MessageFormat,
    pub subject: &'a str,
    pub body: &'a str,
    pub text_body: Option<&'a str>,
    /// The layout's HTML, for MARKDOWN and HTML messages (a TEXT message ignores it).
    pub layout: Option<&'a str>,
}

/// A message's templates, compiled once (per run) and rendered per recipient.
pub struct MessageTemplates {
    env: Environment<'static>,
    format: MessageFormat,
    has_text_body: bool,
    has_layout: bool,
    /// Neither the body nor the layout links `unsubscribe_url`: the HTML gets a footer.
    needs_footer: bool,
    /// The text part (hand-written, or derived from the body) links no `unsubscribe_url`:
    /// it gets an "Unsubscribe: <link>" line.
    text_needs_link: bool,
    /// "page.html" is compiled: an HTML message's whole document (layout, body, footer)
    /// with its CSS inlined once, here (`html::inline_css_in_template`).
    has_page: bool,
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

/// Template names say how their values are escaped: `.html` HTML, `.md` HTML then
/// Markdown, anything else not at all.
const MARKDOWN: AutoEscape = AutoEscape::Custom("markdown");

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else if name.ends_with(".md") {
            MARKDOWN
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(format_value);
    // A body's last line break is the author's.
    env.set_keep_trailing_newline(true);
    env
}

/// Writes one `{{ value }}`: HTML gets `& < > " '` escaped, Markdown that and a backslash
/// before each character Markdown gives a meaning to; the rest as minijinja does.
fn format_value(out: &mut Output<'_>, state: &State<'_, '_>, value: &Value) -> Result<(), minijinja::Error> {
    let markdown = state.auto_escape() == MARKDOWN;
    if !(markdown || state.auto_escape() == AutoEscape::Html) || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    if value.is_undefined() {
        return Ok(());
    }
    // HTML: the five characters that matter (minijinja also escapes `/`, which makes every
    // link in a newsletter longer and no safer).
    let text = value.to_string();
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c if markdown && "\\`*_[]()#+-.!|~{}".contains(c) => {
                escaped.push('\\');
                escaped.push(c);
            }
            c => escaped.push(c),
        }
    }
    out.write_str(&escaped)
        .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "over the size limit"))
}

fn invalid(err: &minijinja::Error) -> Invalid {
    Invalid {
        line: err.line(),
        message: err.detail().map_or_else(|| err.kind().to_string(), str::to_owned),
    }
}

impl MessageTemplates {
    /// Compiles every part; the error names the part (`subject`, `body`, `textBody`,
    /// `layout`) that does not parse.
    pub fn compile(content: &Content<'_>) -> Result<MessageTemplates, (&'static str, Invalid)> {
        let mut env = environment();
        let rich = content.format != MessageFormat::Text;
        env.add_template_owned("subject.txt", content.subject.to_owned())
            .map_err(|e| ("subject", invalid(&e)))?;
        let body_name = match content.format {
            MessageFormat::Text => "body.txt",
            MessageFormat::Markdown => "body.md",
            MessageFormat::Html => "body.html",
        };
        env.add_template_owned(body_name, content.body.to_owned())
            .map_err(|e| ("body", invalid(&e)))?;
        let text_body = content.text_body.filter(|t| rich && !t.trim().is_empty());
        if let Some(text) = text_body {
            env.add_template_owned("text.txt", text.to_owned())
                .map_err(|e| ("textBody", invalid(&e)))?;
        }
        let layout = content.layout.filter(|_| rich);
        if let Some(layout) = layout {
            env.add_template_owned("layout.html", layout.to_owned())
                .map_err(|e| ("layout", invalid(&e)))?;
        }
        let links = |name: &str| {
            env.get_template(name)
                .is_ok_and(|t| t.undeclared_variables(false).contains("unsubscribe_url"))
        };
        let needs_footer = rich && !links(body_name) && !(layout.is_some() && links("layout.html"));
        let text_needs_link = rich && !links(if text_body.is_some() { "text.txt" } else { body_name });
        let has_page = content.format == MessageFormat::Html && {
            let page = match layout {
                Some(layout) => html::splice_content(layout, content.body),
                None => Some(content.body.to_owned()),
            }
            .map(|page| {
                let page = html::document(page);
                if needs_footer {
                    html::add_footer(page, "{{ unsubscribe_url }}")
                } else {
                    page
                }
            })
            .and_then(|page| html::inline_css_in_template(&page));
            page.is_some_and(|page| env.add_template_owned("page.html", page).is_ok())
        };
        Ok(MessageTemplates {
            format: content.format,
            has_text_body: text_body.is_some(),
            has_layout: layout.is_some(),
            needs_footer,
            text_needs_link,
            has_page,
            env,
        })
    }

    /// The message for one recipient.
    pub fn render(&self, values: &Values<'_>, max_bytes: usize) -> Result<Rendered, Rendering> {
        let context = Value::from_serialize(values);
        let subject = self.part("subject.txt", &context, max_bytes)?;
        let (text, html) = match self.format {
            MessageFormat::Text => (self.part("body.txt", &context, max_bytes)?, None),
            MessageFormat::Markdown | MessageFormat::Html => {
                let render_body = |this: &Self| {
                    if this.format == MessageFormat::Markdown {
                        Ok(html::markdown_to_html(&this.part("body.md", &context, max_bytes)?))
                    } else {
                        this.part("body.html", &context, max_bytes)
                    }
                };
                let (html, body) = if self.has_page {
                    (self.part("page.html", &context, max_bytes)?, None)
                } else {
                    let body = render_body(self)?;
                    (
                        self.html(body.clone(), &context, values.unsubscribe_url, max_bytes)?,
                        Some(body),
                    )
                };
                // The text part is the message's own, as listmonk's plain-text alternative
                // is: hand-written, or derived from the body (not the layout's frame).
                let mut text = if self.has_text_body {
                    self.part("text.txt", &context, max_bytes)?
                } else {
                    let body = match body {
                        Some(body) => body,
                        None => render_body(self)?,
                    };
                    html::to_text(&body).map_err(Rendering::Failed)?
                };
                if self.text_needs_link {
                    text.push_str(&format!("\n\n--\nUnsubscribe: {}\n", values.unsubscribe_url));
                }
                (text, Some(html))
            }
        };
        Ok(Rendered { subject, text, html })
    }

    /// The body's HTML in its layout, then the footer and inlined CSS.
    fn html(
        &self,
        body: String,
        context: &Value,
        unsubscribe_url: &str,
        max_bytes: usize,
    ) -> Result<String, Rendering> {
        let mut html = body;
        if self.has_layout {
            let with_content = minijinja::context! { content => Value::from_safe_string(html), ..context.clone() };
            html = self.part("layout.html", &with_content, max_bytes)?;
        }
        let mut html = html::document(html);
        if self.needs_footer {
            html = html::add_footer(html, unsubscribe_url);
        }
        let html = html::inline_css(html).map_err(Rendering::Failed)?;
        if html.len() > max_bytes {
            return Err(Rendering::TooLarge);
        }
        Ok(html)
    }

    fn part(&self, name: &str, context: &Value, max_bytes: usize) -> Result<String, Rendering> {
        let template = self.env.get_template(name).expect("compiled in `compile`");
        let mut out = Bounded {
            text: Vec::new(),
            max: max_bytes,
        };
        let part = name.split('.').next().unwrap_or(name);
        let part = if part == "text" { "textBody" } else { part };
        match template.render_captured_to(context, &mut out) {
            Ok(_) => Ok(String::from_utf8(out.text).expect("templates write UTF-8")),
            Err(err) if err.kind() == ErrorKind::WriteFailure => Err(Rendering::TooLarge),
            Err(err) if err.kind() == ErrorKind::OutOfFuel => Err(Rendering::Failed(format!(
                "the {part} template ran out of fuel (more than {FUEL} steps)"
            ))),
            Err(err) => Err(Rendering::Failed(format!(
                "the {part} template failed: {}",
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

/// A layout given to the API: it compiles, and it places the message (`{{ content }}`).
pub fn check_layout(field: &str, source: &str) -> AppResult<()> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|err| AppError::bad_input(field, format!("the template does not parse: {}", invalid(&err))))?;
    if !template.undeclared_variables(false).contains("content") {
        return Err(AppError::bad_input(
            field,
            "a layout places the message with {{ content }}",
        ));
    }
    Ok(())
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
        let links = Links {
            unsubscribe_url: "https://x.example/u?c=1&s=2",
            web_view_url: "https://x.example/view/1?s=3",
        };
        Values::new(client, links, "m-1".into(), "2030-01-31".into())
    }

    fn text(subject: &str, body: &str) -> MessageTemplates {
        MessageTemplates::compile(&Content {
            format: MessageFormat::Text,
            subject,
            body,
            text_body: None,
            layout: None,
        })
        .unwrap()
    }

    #[test]
    fn old_placeholders_and_new_variables_are_filled_once() {
        let attributes = serde_json::json!({ "plan": "pro", "seats": 12 });
        let t = text(
            "Hi {{full_name}}",
            "{{ email }} {{unsubscribe_url}} {{ client.attributes.plan }} {{ client.attributes.seats + 1 }} \
             {{ client.attributes.city | default('nowhere') }} {{ run.date }} {{ client.comment }} {{ web_view_url }}\n",
        );
        // A value that looks like a template is text.
        let v = values("{{ email }}", &attributes);
        let r = t.render(&v, 1000).unwrap();
        assert_eq!(r.subject, "Hi {{ email }}");
        assert_eq!(
            r.text,
            "ann@example.com https://x.example/u?c=1&s=2 pro 13 nowhere 2030-01-31 met at the fair https://x.example/view/1?s=3\n"
        );
        assert_eq!(r.html, None);
    }

    #[test]
    fn html_escapes_values_sits_in_its_layout_and_gets_a_footer() {
        let attributes = serde_json::json!({ "plan": "<b>pro</b>" });
        let t = MessageTemplates::compile(&Content {
            format: MessageFormat::Html,
            subject: "Hi {{ client.full_name }}",
            body: "<p>Dear {{ client.full_name }}, plan {{ client.attributes.plan }}</p>",
            text_body: None,
            layout: Some(
                "<html><head><style>p { color: #333 }</style></head><body><h1>News</h1>{{ content }}</body></html>",
            ),
        })
        .unwrap();
        let r = t
            .render(&values("<script>x</script> & co", &attributes), 100_000)
            .unwrap();
        assert_eq!(r.subject, "Hi <script>x</script> & co", "a subject is text");
        let html = r.html.unwrap();
        // (css-inline writes the document out again: `&#x2f;` comes back as `/`.)
        assert!(html.contains("Dear &lt;script&gt;x&lt;/script&gt; &amp; co"), "{html}");
        assert!(html.contains("&lt;b&gt;pro&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<h1>News</h1>"), "the layout is around it: {html}");
        assert!(
            html.contains("<p style=\"color: #333;\">"),
            "the CSS is inlined: {html}"
        );
        assert!(
            html.contains("Unsubscribe") && html.contains("https://x.example/u?c=1&amp;s=2"),
            "{html}"
        );
        // The text part is derived from the HTML, footer link included, the name as text.
        assert!(r.text.contains("<script>x</script> & co"), "{}", r.text);
        assert!(r.text.contains("https://x.example/u?c=1&s=2"), "{}", r.text);
    }

    #[test]
    fn css_inlined_once_per_run_gives_the_mail_inlining_each_one_gives() {
        let layout = "<html><head><style>h1 { color: #b8441a } .card p { margin: 0 } a { color: red }</style></head>\
            <body><div class=\"card\">{{ content }}</div><p>{{ client.attributes.city | default('Springfield') }}</p></body></html>";
        let body = "<h1 title=\"{{ client.full_name }}\">Hi {{ client.full_name }}</h1>\
            {% if client.attributes.vip %}<p class=\"vip\">VIP</p>{% else %}<p>Welcome</p>{% endif %}\
            <ul>{% for i in range(3) %}<li>{{ i }}</li>{% endfor %}</ul><a href=\"{{ web_view_url }}\">View</a>";
        let content = Content {
            format: MessageFormat::Html,
            subject: "s",
            body,
            text_body: None,
            layout: Some(layout),
        };
        let once = MessageTemplates::compile(&content).unwrap();
        assert!(once.has_page, "this newsletter is inlined once per run");
        let mut each = MessageTemplates::compile(&content).unwrap();
        each.has_page = false;
        let normal = |html: &str| css_inline::inline(html).unwrap();
        for (name, attributes) in [
            ("Ann", serde_json::json!({})),
            (
                "<script>x</script> O'Neil & \"Co\"",
                serde_json::json!({ "vip": true, "city": "<b>" }),
            ),
            ("{{ email }} {% if %}", serde_json::json!({ "city": "a\nb" })),
        ] {
            let v = values(name, &attributes);
            let (a, b) = (once.render(&v, 100_000).unwrap(), each.render(&v, 100_000).unwrap());
            assert_eq!(
                normal(a.html.as_deref().unwrap()),
                normal(b.html.as_deref().unwrap()),
                "{name}"
            );
            assert_eq!(a.text, b.text);
            assert!(a.html.unwrap().contains("<h1 title="), "inlined and filled");
        }
    }

    #[test]
    fn markdown_escapes_values_for_html_and_markdown_and_a_text_body_wins() {
        let attributes = serde_json::json!({});
        let t = MessageTemplates::compile(&Content {
            format: MessageFormat::Markdown,
            subject: "s",
            body: "# Hello {{ client.full_name }}\n\n[Leave]({{ unsubscribe_url }})\n",
            text_body: Some("Hello {{ client.full_name }}"),
            layout: None,
        })
        .unwrap();
        let r = t.render(&values("*Ann* <i>", &attributes), 100_000).unwrap();
        let html = r.html.unwrap();
        assert!(html.contains("<h1>Hello *Ann* &lt;i&gt;</h1>"), "{html}");
        assert!(
            html.contains("<a href=\"https://x.example/u?c=1&amp;s=2\">Leave</a>"),
            "{html}"
        );
        assert!(
            !html.contains("You get this mail"),
            "it links unsubscribe_url itself: {html}"
        );
        assert_eq!(
            r.text, "Hello *Ann* <i>\n\n--\nUnsubscribe: https://x.example/u?c=1&s=2\n",
            "the hand-written text part, unescaped, and the way out it did not have"
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
        assert!(check_layout("input.html", "<p>no content here</p>").is_err());
        assert!(check_layout("input.html", "<div>{{ content }}</div>").is_ok());
        // Nothing reads files: there is no include, import or extends at all.
        for source in [
            "{% include 'etc/passwd' %}",
            "{% import 'x' as y %}",
            "{% extends 'x' %}",
        ] {
            let attributes = serde_json::json!({});
            let compiled = MessageTemplates::compile(&Content {
                format: MessageFormat::Text,
                subject: "s",
                body: source,
                text_body: None,
                layout: None,
            });
            let failed = match compiled {
                Err(_) => true,
                Ok(t) => t.render(&values("A", &attributes), 1000).is_err(),
            };
            assert!(failed, "{source}");
        }
        let attributes = serde_json::json!({});
        // Out of fuel, not stuck.
        let t = text(
            "s",
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
        );
        assert!(
            matches!(t.render(&values("A", &attributes), usize::MAX), Err(Rendering::Failed(why)) if why.contains("fuel"))
        );
        // Over the size limit while writing, not after.
        let t = text("s", "{{ full_name }}{{ full_name }}");
        assert_eq!(t.render(&values("abc", &attributes), 5), Err(Rendering::TooLarge));
        assert_eq!(t.render(&values("abc", &attributes), 6).unwrap().text, "abcabc");
    }
}
