//! Mailings: a message to a set of clients on a schedule.

pub mod access;
pub mod audience;
pub mod graphql;
pub mod model;
pub mod schedule;
