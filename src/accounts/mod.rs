//! Accounts: users, roles, sessions and the e-mail tokens that verify and recover them.

pub mod graphql;
pub mod model;
