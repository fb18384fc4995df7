//! GraphQL ids as the API passes them: opaque strings that hold a UUID.

use async_graphql::ID;

/// An ID that is not a UUID names nothing: it behaves like a missing object.
pub fn parse_id(id: &ID) -> Option<uuid::Uuid> {
    id.parse().ok()
}
