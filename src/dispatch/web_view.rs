//! "View in browser": a delivery's message rendered again from its run's snapshot (what
//! the run sent, not today's message), through the same templates and links as the mail.

use diesel::OptionalExtension;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;

use super::batch::RunInHand;
use super::compose::{self, Recipient};
use super::queue;
use crate::app::AppState;
use crate::db::types::{ClientId, DeliveryId, RunId};
use crate::messages::template::Rendered;

#[derive(diesel::QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = SqlUuid)]
    run_id: RunId,
    #[diesel(sql_type = SqlUuid)]
    client_id: ClientId,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    full_name: String,
}

/// The delivery's message as its mail carried it (None: no such delivery), or why it
/// cannot be shown (a template that fails for this recipient).
pub async fn render(state: &AppState, delivery_id: DeliveryId) -> anyhow::Result<Option<Result<Rendered, String>>> {
    let mut conn = state.pool().get().await?;
    let delivery: Option<DeliveryRow> =
        diesel::sql_query("SELECT run_id, client_id, email, full_name FROM deliveries WHERE id = $1")
            .bind::<SqlUuid, _>(delivery_id)
            .get_result(&mut conn)
            .await
            .optional()?;
    let Some(delivery) = delivery else { return Ok(None) };
    let Some(snapshot) = queue::run_snapshots(&mut conn, &[delivery.run_id])
        .await?
        .remove(&delivery.run_id)
    else {
        return Ok(None);
    };
    let client = queue::client_details(&mut conn, &[delivery.client_id])
        .await?
        .remove(&delivery.client_id);
    drop(conn);
    let key = state.unsubscribe_key().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = RunInHand::new(snapshot);
    let message = match run.message() {
        Ok(message) => message,
        Err(why) => return Ok(Some(Err(why))),
    };
    let to = Recipient::new(
        delivery_id,
        delivery.client_id,
        &delivery.email,
        &delivery.full_name,
        client.as_ref(),
    );
    let email = crate::mail::address::parse(&delivery.email).map_or(delivery.email.clone(), |a| a.text);
    let config = state.config();
    Ok(Some(compose::render(
        &config.http,
        key,
        &message,
        &to,
        &email,
        config.mail.max_message_size,
    )))
}
