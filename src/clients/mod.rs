//! Clients: the people a user mails (e-mail, full name, comment), owned by one user.

pub mod csv;
pub mod graphql;
pub mod model;
