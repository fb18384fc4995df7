//! Accounts: users, roles, sessions and the e-mail tokens that verify and recover them.

pub mod flows;
pub mod graphql;
pub mod model;
pub mod password;
pub mod tokens;
mod viewer;

pub use viewer::{Viewer, authenticate, viewer};
