//! Messages: what a mailing sends (subject and body), owned by one user.

pub mod graphql;
pub mod model;
pub mod template;
