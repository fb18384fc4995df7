//! GraphQL ids as the API passes them: opaque strings that hold a UUID, read into the id
//! type the argument names (`ClientId`, `MailingId`, ...).

use std::str::FromStr;

use async_graphql::ID;

/// An ID that is not a UUID names nothing: it behaves like a missing object.
pub fn parse_id<T: FromStr>(id: &ID) -> Option<T> {
    id.parse().ok()
}
