//! The browser session cookie: the same session token as the bearer header, kept where
//! page scripts cannot read it (HttpOnly), sent only on same-site requests and top-level
//! navigations (SameSite=Lax), over https only when PUBLIC_URL is https. Reading it from a
//! request is the HTTP layer's (`http::auth::cookie_token`).

use cookie::{Cookie, SameSite};

use crate::config::Config;

pub const SESSION_COOKIE: &str = "mailwarm_session";

/// `Set-Cookie` value that stores `token` for SESSION_TTL.
pub fn session_cookie(config: &Config, token: &str) -> String {
    let ttl = cookie::time::Duration::seconds(i64::try_from(config.accounts.session_ttl.as_secs()).unwrap_or(i64::MAX));
    build(config, token.to_owned()).max_age(ttl).build().to_string()
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clearing_cookie(config: &Config) -> String {
    build(config, String::new())
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

fn build(config: &Config, value: String) -> cookie::CookieBuilder<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.http.public_url().scheme() == "https")
}
