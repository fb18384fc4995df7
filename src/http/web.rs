//! The browser front end in web/, embedded in release builds (read from the source tree in
//! debug builds, so edits show without a rebuild). It is a single page: any GET that names
//! no file (`/clients`, `/mailings/…`, the `/verify-email` and `/reset-password` links of
//! account mails) gets `index.html`, whose script routes by path.
//!
//! Every response carries a Content-Security-Policy that allows only our own scripts,
//! styles and connections (images may also come from https:, for blog posts): untrusted
//! text that slipped into the page as HTML still could not run or load anything.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct WebAssets;

/// The front end's policy: nothing inline, nothing from elsewhere.
const APP_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// GraphiQL sets inline styles from its scripts, so its page allows them (scripts stay our own).
const GRAPHIQL_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// GET /graphiql: the playground, whose scripts and styles are served from web/vendor.
pub async fn graphiql() -> Response {
    serve("graphiql/index.html", GRAPHIQL_POLICY)
}

/// Any other GET: a file of web/, or the single page for paths that name no file.
pub async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') {
        return serve(&format!("{path}index.html"), APP_POLICY);
    }
    if WebAssets::get(path).is_none() && !path.rsplit('/').next().unwrap_or("").contains('.') {
        return serve("index.html", APP_POLICY);
    }
    serve(path, APP_POLICY)
}

fn serve(path: &str, policy: &'static str) -> Response {
    let Some(file) = WebAssets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime =
        HeaderValue::from_str(file.metadata.mimetype()).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let cache = if path.ends_with(".html") {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy)),
            (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        file.data,
    )
        .into_response()
}
