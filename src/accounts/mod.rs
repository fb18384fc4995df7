//! Accounts: users, roles, sessions and the e-mail tokens that verify and recover them.

pub mod api_keys;
pub mod auth;
pub mod cookie;
pub mod flows;
pub mod graphql;
pub mod live;
pub mod model;
pub mod password;
pub mod moderation;
pub mod role;
pub mod throttle;
pub mod tokens;
mod viewer;

pub use auth::authenticate;
pub use viewer::{ClientIp, Credential, Viewer, client_ip, viewer};
