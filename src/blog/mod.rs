//! The blog: posts admins write, anyone reads; each published post counts its views.

pub mod graphql;
pub mod model;
