//! Clients: the people a user mails (e-mail, full name, comment, attributes), owned by one
//! user, and the tags the user labels them with.

pub mod csv;
pub mod graphql;
pub mod import;
pub mod model;
pub mod segment;
pub mod tags;
