//! Messages: what a mailing sends (subject, body in TEXT, MARKDOWN or HTML, an optional
//! text part), owned by one user, and the layouts HTML messages sit in.

pub mod graphql;
pub mod html;
pub mod layout;
pub mod model;
pub mod template;
