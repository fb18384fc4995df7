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
        // A link to a stylesheet elsewhere is not fetched, and not an error.
        let linked = inline_css(
            "<html><head><link rel=\"stylesheet\" href=\"http://127.0.0.1:9/x.css\"><style>p{margin:0}</style></head><body><p>x</p></body></html>".into(),
        );
        assert!(linked.is_ok(), "{linked:?}");
    }
}
