//! The benchmarks' newsletter: an HTML message with a few variables in a layout with a
//! stylesheet (so the CSS is inlined and the text part derived, as for a real newsletter).

pub const SUBJECT: &str = "{{ client.full_name }}, our June news";

pub const BODY: &str = r#"<h1>Hello {{ client.full_name }}</h1>
<p>Here is what is new this month for {{ client.attributes.company | default("your team") }}.</p>
<table class="items">
  <tr><td class="item">Faster sending</td><td>Every instance shares the work.</td></tr>
  <tr><td class="item">Layouts</td><td>Write your brand once, use it everywhere.</td></tr>
  <tr><td class="item">Preview</td><td>See every mail as each client will.</td></tr>
</table>
<p><a class="button" href="https://example.com/june?u={{ client.email | urlencode }}">Read more</a></p>
<p class="small"><a href="{{ web_view_url }}">View in browser</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
"#;

pub const LAYOUT: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<style>
  body { margin: 0; background: #f4f4f5; font-family: Helvetica, Arial, sans-serif; }
  .card { max-width: 600px; margin: 24px auto; background: #ffffff; padding: 24px; border-radius: 8px; }
  h1 { color: #b8441a; font-size: 24px; }
  p { color: #1f2937; line-height: 1.5; }
  .items td { padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
  .item { font-weight: bold; }
  .button { display: inline-block; background: #b8441a; color: #ffffff; padding: 8px 16px; border-radius: 4px; }
  .small { font-size: 12px; color: #6b7280; }
  @media (max-width: 600px) { .card { margin: 0; border-radius: 0; } }
</style>
</head>
<body>
<div class="card">
{{ content }}
</div>
<p class="small">Acme Ltd · 1 Main Street · Springfield</p>
</body>
</html>
"#;
