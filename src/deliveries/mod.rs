//! The mailing log: runs (occurrences of a schedule), deliveries (one message to one client
//! in one run) and attempts (each try to hand a message to the mail server).

pub mod graphql;
pub mod model;
pub mod retention;
