//! The static front end in web/, embedded in release builds (read from the source tree
//! in debug builds, so edits show without a rebuild).

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct WebAssets;

/// GET /graphiql: the playground, whose scripts and styles are served from web/vendor.
pub async fn graphiql() -> Response {
    serve("graphiql/index.html")
}

/// Any other GET: a file of web/, `index.html` for folders.
pub async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') {
        return serve(&format!("{path}index.html"));
    }
    serve(path)
}

fn serve(path: &str) -> Response {
    let Some(file) = WebAssets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime =
        HeaderValue::from_str(file.metadata.mimetype()).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        file.data,
    )
        .into_response()
}
