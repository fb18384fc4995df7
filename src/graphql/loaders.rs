//! The DataLoaders every request gets, so nested fields (`Mailing.message`, `owner`,
//! `clients`, `status`) cost one query per field per request, not one per row. They do not
//! cache: each load reads the database afresh.

use async_graphql::dataloader::DataLoader;

use crate::accounts::graphql::UserLoader;
use crate::app::AppState;
use crate::mailings::graphql::{MailingClientsLoader, StartedLoader};
use crate::messages::graphql::MessageLoader;

/// Adds the loaders to a request's (or a WebSocket connection's) data.
pub fn add_loaders(data: &mut async_graphql::Data, state: &AppState) {
    let pool = state.pool().clone();
    data.insert(DataLoader::new(MessageLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(UserLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(StartedLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(MailingClientsLoader(pool), tokio::spawn));
}
