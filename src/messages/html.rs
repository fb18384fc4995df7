//! The HTML side of a message, after its templates have run: Markdown to HTML
//! (pulldown-cmark, CommonMark), a whole document around a fragment, the unsubscribe footer
//! a message without its own link gets (as listmonk and Keila add one), `<style>` rules
//! inlined into `style` attributes for mail clients that drop `<style>` (css-inline, with
//! its network and file loading compiled out: nothing is fetched), and a plain-text part
//! derived from the HTML (html2text) when the author wrote none.

/// Width of the derived text part's lines.
const TEXT_WIDTH: usize = 78;

/// CommonMark (with tables and strikethrough) to HTML. Raw HTML in the source is the
/// author's and passes through; values from templates were escaped before this.
pub fn markdown_to_html(source: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let parser = Parser::new_ext(source, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
    let mut out = String::with_capacity(source.len() * 5 / 4);
    html::push_html(&mut out, parser);
    out
}

/// A whole document: `html` as it is when it has an `<html>` element, else inside one.
pub fn document(html: String) -> String {
    if find_tag(&html, "<html").is_some() {
        return html;
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\n<body>\n{html}\n</body></html>\n"
    )
}

/// The unsubscribe footer, before `</body>` (or at the end when there is none).
pub fn add_footer(mut html: String, unsubscribe_url: &str) -> String {
    let footer = format!(
        "<p style=\"margin:24px 0 0;font-size:12px;color:#6b7280;text-align:center\">\
         You get this mail because you are on our list. \
         <a href=\"{}\" style=\"color:#6b7280\">Unsubscribe</a></p>\n",
        attribute(unsubscribe_url)
    );
    match rfind_tag(&html, "</body") {
        Some(at) => html.insert_str(at, &footer),
        None => html.push_str(&footer),
    }
    html
}

/// A value for a double-quoted attribute.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<style>` rules moved into `style` attributes; `@media` and other at-rules kept in a
/// `<style>` for the clients that read it. HTML without a `<style>` is left as it is (no
/// parse and re-serialise for nothing).
pub fn inline_css(html: String) -> Result<String, String> {
    if find_tag(&html, "<style").is_none() {
        return Ok(html);
    }
    css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_at_rules(true)
        .build()
        .inline(&html)
        .map_err(|e| format!("the CSS cannot be inlined: {e}"))
}

/// The CSS of an HTML template inlined once, before any value is filled in, so that each
/// delivery only renders (css-inline parses and writes a whole document: done per delivery
/// it was a fifth of composing a newsletter). Each template tag (`{{ }}`, `{% %}`, `{# #}`,
/// a raw block) is swapped for an HTML comment, which the HTML parser keeps where it stands
/// (in a table too) and which survives in attribute values as text; after inlining, each
/// comment must still be there exactly once and in order, or None is returned and the
/// caller inlines each rendered mail instead (a tag in a CSS selector, in a `<title>`, a
/// template that itself holds comments...). Written here because no crate knows both Jinja
/// and HTML.
pub fn inline_css_in_template(source: &str) -> Option<String> {
    if source.contains("<!--") || find_tag(source, "<style").is_none() {
        return None;
    }
    let (protected, tags) = protect_tags(source)?;
    let inlined = inline_css(protected).ok()?;
    let mut out = String::with_capacity(inlined.len() + source.len() / 4);
    let mut rest = inlined.as_str();
    for (i, tag) in tags.iter().enumerate() {
        let marker = format!("<!--mw{i}-->");
        let at = rest.find(&marker)?;
        out.push_str(&rest[..at]);
        out.push_str(tag);
        rest = &rest[at + marker.len()..];
    }
    if rest.contains("<!--mw") {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// A layout with `body` (a template too) in place of its one `{{ content }}`; None when
/// the layout uses `content` otherwise.
pub fn splice_content(layout: &str, body: &str) -> Option<String> {
    let (protected, tags) = protect_tags(layout)?;
    let is_content = |tag: &str| {
        tag.starts_with("{{")
            && tag[2..tag.len() - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()) == "content"
    };
    let mut found = None;
    for (i, tag) in tags.iter().enumerate() {
        if is_content(tag) && found.is_none() {
            found = Some(i);
        } else if tag.contains("content") {
            return None;
        }
    }
    let found = found?;
    let mut out = protected.replace(&format!("<!--mw{found}-->"), body);
    for (i, tag) in tags.iter().enumerate().rev() {
        out = out.replace(&format!("<!--mw{i}-->"), tag);
    }
    Some(out)
}

/// The source with each template tag replaced by `<!--mwN-->`, and the tags; None when a
/// tag is not closed.
fn protect_tags(source: &str) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(source.len());
    let mut tags = Vec::new();
    let mut rest = source;
    while let Some(start) = ["{{", "{%", "{#"].iter().filter_map(|open| rest.find(open)).min() {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let close = match &tail[..2] {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let mut end = tail[2..].find(close)? + 4;
        let inner = tail[2..end - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if close == "%}" && inner == "raw" {
            // The raw block is one tag: its text is not HTML to us.
            let endraw = tail[end..].find("endraw")? + end;
            end = tail[endraw..].find("%}")? + endraw + 2;
        }
        out.push_str(&format!("<!--mw{}-->", tags.len()));
        tags.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out.push_str(rest);
    Some((out, tags))
}

/// The text a mail client shows where it shows no HTML.
pub fn to_text(html: &str) -> Result<String, String> {
    html2text::from_read(html.as_bytes(), TEXT_WIDTH).map_err(|e| format!("the text part cannot be derived: {e}"))
}

/// Where `tag` (lower case, e.g. `<style`) first starts, ignoring ASCII case.
fn find_tag(html: &str, tag: &str) -> Option<usize> {
    html.as_bytes()
        .windows(tag.len())
        .position(|w| w.eq_ignore_ascii_case(tag.as_bytes()))
}

fn rfind_tag(html: &str, tag: &str) -> Option<usize> {
    html.as_bytes()
        .windows(tag.len())
        .rposition(|w| w.eq_ignore_ascii_case(tag.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_is_inlined_into_a_template_around_its_tags_or_not_at_all() {
        let source = "<html><head><style>td { color: red } .x { margin: 0 }</style></head><body>\
            <table>{% for i in items %}<tr><td class=\"x\" title=\"{{ i | default(\"a\") }}\">{{ i }}</td></tr>{% endfor %}</table>\
            {% raw %}<td>{{ not a tag }}</td>{% endraw %}{# note #}</body></html>";
        let inlined = inline_css_in_template(source).unwrap();
        // The parser adds the <tbody> a table's rows are in, after the loop's start: each
        // row then opens a <tbody> of its own, which a browser reads as the same table.
        assert!(
            inlined.contains("<table>{% for i in items %}<tbody><tr><td class=\"x\" title=\"{{ i | default(\"a\") }}\" style=\"color: red;margin: 0;\">{{ i }}</td></tr>{% endfor %}</tbody></table>"),
            "{inlined}"
        );
        assert!(
            inlined.contains("{% raw %}<td>{{ not a tag }}</td>{% endraw %}{# note #}"),
            "{inlined}"
        );
        // A tag in a declaration moves with it; one in a selector cannot be kept (the rule
        // does not parse), and the caller inlines per mail instead.
        assert_eq!(
            inline_css_in_template("<style>p { color: {{ c }} }</style><p>x</p>").as_deref(),
            Some("<html><head></head><body><p style=\"color: {{ c }};\">x</p></body></html>")
        );
        assert_eq!(
            inline_css_in_template("<style>.{{ c }} { color: red }</style><p>x</p>"),
            None
        );
        assert_eq!(
            inline_css_in_template("<style>p{}</style><!-- mine --><p>{{ x }}</p>"),
            None
        );
        assert_eq!(inline_css_in_template("<style>p{}</style><p>{{ unclosed</p>"), None);
        assert_eq!(inline_css_in_template("<p>{{ x }}</p>"), None, "nothing to inline");
    }

    #[test]
    fn markdown_footer_css_and_text() {
        let html = markdown_to_html("# Hello\n\nSome *news* and [a link](https://example.com/x).\n");
        assert!(
            html.contains("<h1>Hello</h1>") && html.contains("<em>news</em>"),
            "{html}"
        );
        let doc = add_footer(document(html), "https://x.example/u?c=1&s=2");
        assert!(doc.contains("href=\"https://x.example/u?c=1&amp;s=2\""), "{doc}");
        assert!(doc.find("Unsubscribe").unwrap() < doc.find("</body>").unwrap());
        let text = to_text(&doc).unwrap();
        assert!(
            text.contains("Hello") && text.contains("https://example.com/x"),
            "{text}"
        );

        let styled = inline_css(
            "<html><head><style>p { color: red } @media (max-width: 600px) { p { color: blue } }</style></head>\
             <body><p>Hi</p></body></html>"
                .into(),
        )
        .unwrap();
        assert!(styled.contains("<p style=\"color: red;\">Hi</p>"), "{styled}");
        assert!(styled.contains("@media"), "the at-rule stays: {styled}");
        // A link to a stylesheet elsewhere is not fetched (nothing connects to a listener
        // it names), and not an error.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let linked = inline_css(format!(
            "<html><head><link rel=\"stylesheet\" href=\"http://127.0.0.1:{port}/x.css\">\
             <style>@import url(http://127.0.0.1:{port}/y.css); p{{margin:0}}</style></head><body><p>x</p></body></html>"
        ));
        assert!(linked.is_ok(), "{linked:?}");
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "something connected"
        );
    }
}
