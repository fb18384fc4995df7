//! Statistics: homeStats and dailyStats against rows made here, day boundaries in a zone
//! that is not UTC.

use crate::common::TestApp;
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

async fn setup(app: &TestApp, token: &str, clients: &[&str]) -> (Value, Vec<Value>) {
    let mut ids = Vec::new();
    for email in clients {
        ids.push(app.new_client(token, email).await);
    }
    let message = app.new_message(token).await;
    let mailing = app
        .graphql_as(
            token,
            "mutation($m: ID!, $c: [ID!]!) { createMailing(input: { startsAt: \"2099-01-01T00:00:00Z\", periodicity: DAILY, messageId: $m, clientIds: $c }) { id } }",
            json!({ "m": message, "c": ids }),
        )
        .await
        .json()["data"]["createMailing"]["id"]
        .clone();
    (mailing, ids)
}

#[tokio::test]
async fn home_stats_count_mailings_active_ones_and_distinct_addresses() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let (running, _) = setup(&app, &ann, &["x@example.com", "y@example.com"]).await;
    // Bob shares one address with Ann, in another case.
    let (paused, _) = setup(&app, &bob, &["X@example.com", "z@example.com"]).await;
    setup(&app, &bob, &["w@example.com"]).await; // CREATED: not active
    let mut conn = app.db.conn().await;
    for mailing in [&running, &paused] {
        diesel::sql_query("INSERT INTO runs (mailing_id, run_at, status) VALUES ($1::uuid, now(), 'running')")
            .bind::<diesel::sql_types::Text, _>(mailing.as_str().unwrap())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    diesel::sql_query("UPDATE mailings SET paused = true WHERE id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(paused.as_str().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    let stats = app
        .graphql(
            "{ homeStats { mailingsTotal mailingsActive uniqueClients } }",
            json!({}),
        )
        .await;
    assert_eq!(
        stats.json()["data"]["homeStats"],
        json!({ "mailingsTotal": 3, "mailingsActive": 1, "uniqueClients": 4 })
    );
}

#[tokio::test]
async fn daily_stats_split_days_in_the_requested_zone() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let (mailing, _) = setup(&app, &ann, &["x@example.com", "y@example.com"]).await;
    let (bobs, _) = setup(&app, &bob, &["z@example.com"]).await;

    // Attempts and sends at chosen instants: 2026-03-10 20:30Z is the 10th in UTC and the
    // 10th in Moscow (+3, 23:30); 22:30Z is the 10th in UTC but the 11th in Moscow.
    let mut conn = app.db.conn().await;
    for (mailing, rows) in [
        (
            &mailing,
            vec![
                ("2026-03-10T20:30:00Z", "success", true),
                ("2026-03-10T22:30:00Z", "temporary_failure", false),
                ("2026-03-10T22:40:00Z", "success", true),
                ("2026-03-11T08:00:00Z", "permanent_failure", false),
                ("2026-03-11T09:00:00Z", "unknown", false),
            ],
        ),
        (&bobs, vec![("2026-03-10T20:30:00Z", "success", true)]),
    ] {
        for (at, status, sent) in rows {
            diesel::sql_query(
                "WITH r AS (INSERT INTO runs (mailing_id, run_at, status) VALUES ($1::uuid, $2::timestamptz, 'done') RETURNING id, mailing_id), \
                 m AS (SELECT r.id AS run_id, r.mailing_id, ml.owner_id, c.id AS client_id, c.email FROM r \
                       JOIN mailings ml ON ml.id = r.mailing_id JOIN mailing_clients mc ON mc.mailing_id = r.mailing_id \
                       JOIN clients c ON c.id = mc.client_id LIMIT 1), \
                 d AS (INSERT INTO deliveries (run_id, mailing_id, owner_id, client_id, email, full_name, status, sent_at) \
                       SELECT run_id, mailing_id, owner_id, client_id, email, 'C', CASE WHEN $4 THEN 'sent' ELSE 'failed' END, \
                              CASE WHEN $4 THEN $2::timestamptz END FROM m RETURNING id, mailing_id, owner_id, email) \
                 INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, attempted_at, status) \
                 SELECT id, mailing_id, owner_id, email, 1, $2::timestamptz, $3 FROM d",
            )
            .bind::<diesel::sql_types::Text, _>(mailing.as_str().unwrap())
            .bind::<diesel::sql_types::Text, _>(at)
            .bind::<diesel::sql_types::Text, _>(status)
            .bind::<diesel::sql_types::Bool, _>(sent)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }

    const DAILY: &str = "query($z: String, $m: ID) { dailyStats(from: \"2026-03-09T21:00:00Z\", to: \"2026-03-12T21:00:00Z\", timeZone: $z, mailingId: $m) { day attempts succeeded failed sent } }";
    let moscow = app.graphql_as(&ann, DAILY, json!({ "z": "Europe/Moscow" })).await;
    assert_eq!(
        moscow.json()["data"]["dailyStats"],
        json!([
            { "day": "2026-03-10", "attempts": 1, "succeeded": 1, "failed": 0, "sent": 1 },
            { "day": "2026-03-11", "attempts": 4, "succeeded": 1, "failed": 2, "sent": 1 },
            { "day": "2026-03-12", "attempts": 0, "succeeded": 0, "failed": 0, "sent": 0 },
        ]),
        "{}",
        moscow.json()
    );
    let utc = app.graphql_as(&ann, DAILY, json!({ "z": null, "m": mailing })).await;
    assert_eq!(
        utc.json()["data"]["dailyStats"],
        json!([
            { "day": "2026-03-09", "attempts": 0, "succeeded": 0, "failed": 0, "sent": 0 },
            { "day": "2026-03-10", "attempts": 3, "succeeded": 2, "failed": 1, "sent": 2 },
            { "day": "2026-03-11", "attempts": 2, "succeeded": 0, "failed": 1, "sent": 0 },
            { "day": "2026-03-12", "attempts": 0, "succeeded": 0, "failed": 0, "sent": 0 },
        ]),
        "{}",
        utc.json()
    );
    // Another user's mailing is not found; a bad zone names the field.
    let foreign = app.graphql_as(&bob, DAILY, json!({ "m": mailing })).await;
    assert_eq!(foreign.error_code(), "NOT_FOUND");
    let zone = app.graphql_as(&ann, DAILY, json!({ "z": "Mars/Olympus" })).await;
    assert_eq!(zone.json()["errors"][0]["extensions"]["field"], "timeZone");
}
