//! The DataLoaders every request gets, so nested fields (`Mailing.message`, `owner`,
//! `clients`, `status`) cost one query per field per request, not one per row. They do not
//! cache: each load reads the database afresh.

use async_graphql::dataloader::DataLoader;

use crate::accounts::graphql::UserLoader;
use crate::app::AppState;
use crate::clients::graphql::{ClientTagsLoader, TagCountLoader};
use crate::deliverability::graphql::SuppressionLoader;
use crate::deliveries::graphql::{
    AttemptsOfLoader, BounceLoader, ClientLoader, DeliveryLoader, MailingLoader, RunCountsLoader, RunTimeLoader,
    StatsLoader,
};
use crate::mailings::graphql::{MailingClientsLoader, MailingTagsLoader, RecipientsLoader, StartedLoader};
use crate::messages::graphql::{LayoutLoader, MessageLoader};
use crate::senders::graphql::{IdentityServersLoader, SenderIdentityLoader, SmtpServerLoader};

/// Adds the loaders to a request's (or a WebSocket connection's) data.
pub fn add_loaders(data: &mut async_graphql::Data, state: &AppState) {
    let pool = state.pool().clone();
    data.insert(DataLoader::new(MessageLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(LayoutLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(ClientTagsLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(TagCountLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(UserLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(StartedLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(MailingClientsLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(RecipientsLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(MailingTagsLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(RunCountsLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(RunTimeLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(MailingLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(ClientLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(DeliveryLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(AttemptsOfLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(BounceLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(SuppressionLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(IdentityServersLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(SmtpServerLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(SenderIdentityLoader(pool.clone()), tokio::spawn));
    data.insert(DataLoader::new(StatsLoader(pool), tokio::spawn));
}

/// Declares a DataLoader that batches look-ups by key into one database call:
/// `batch_loader!(Name: Key => Value, |conn, keys| async { ... a QueryResult<HashMap<Key, Value>> ... });`
#[macro_export]
macro_rules! batch_loader {
    ($(#[$doc:meta])* $name:ident: $key:ty => $value:ty, |$conn:ident, $keys:ident| $body:expr) => {
        $(#[$doc])*
        pub struct $name(pub $crate::db::DbPool);

        impl async_graphql::dataloader::Loader<$key> for $name {
            type Value = $value;
            type Error = std::sync::Arc<$crate::error::AppError>;

            async fn load(&self, $keys: &[$key]) -> Result<std::collections::HashMap<$key, $value>, Self::Error> {
                let mut pooled = self.0.get().await.map_err(|e| std::sync::Arc::new(e.into()))?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                let loaded: diesel::QueryResult<std::collections::HashMap<$key, $value>> = $body.await;
                loaded.map_err(|e| std::sync::Arc::new(e.into()))
            }
        }
    };
}
