//! Statistics: the public numbers of the home page and each user's numbers per day.

pub mod graphql;
pub mod model;
