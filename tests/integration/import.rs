//! Large imports: `POST /import/clients.csv` streams the file into PostgreSQL and a
//! background job imports it in chunks, with progress, per-line errors and their CSV.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::{Reply, TestApp};

async fn upload(app: &TestApp, token: &str, content_type: &str, csv: Vec<u8>) -> Reply {
    app.send(
        Request::post("/import/clients.csv")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(csv))
            .unwrap(),
    )
    .await
}

const JOB: &str = "query($id: ID!) { importJob(id: $id) { id status total processed created updated errorCount \
    failure errors(first: 100) { line message } } }";

/// Polls the job until it is DONE or FAILED.
async fn finished(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = app.graphql_as(token, JOB, json!({ "id": id })).await.json();
        let job = reply["data"]["importJob"].clone();
        if job["status"] == "DONE" || job["status"] == "FAILED" {
            return job;
        }
        assert!(Instant::now() < deadline, "the import did not finish: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job_id(reply: &Reply) -> String {
    assert_eq!(
        reply.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["importJob"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_upload_is_imported_in_the_background_with_errors_by_line() {
    let app = TestApp::dispatching(&["--body-limit", "16KiB"]).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    app.graphql_as(
        &ann,
        "mutation { createClient(input: { email: \"old@example.com\", fullName: \"Old\", attributes: { plan: \"free\", seats: 2 } }) { id } }",
        json!({}),
    )
    .await;
    let csv = "\u{feff}email,full_name,comment,tags,plan\n\
               old@example.com,Old Renamed,,vip,pro\n\
               new@example.com,New One,\"two\nlines\",vip; news,\n\
               not-an-address,Bad,,,\n\
               NEW@example.com,Again,,,\n\
               ctl@example.com,\"Line\rbreak\",,,\n\
               nul@example.com,Nul\0Name,,,\n\
               ,,,,\n\
               last@example.com,Last,\"tab\there, back\\\\slash\",,basic\n";
    let reply = upload(&app, &ann, "text/csv; charset=utf-8", csv.as_bytes().to_vec()).await;
    let id = job_id(&reply);
    let job = finished(&app, &ann, &id).await;
    assert_eq!(job["status"], "DONE", "{job}");
    assert_eq!(job["total"], 7, "{job}");
    assert_eq!(job["processed"], 7);
    assert_eq!(
        (job["created"].clone(), job["updated"].clone()),
        (json!(2), json!(1)),
        "{job}"
    );
    assert_eq!(job["errorCount"], 4);
    let errors: Vec<(i64, String)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["message"].as_str().unwrap().to_owned()))
        .collect();
    let lines: Vec<i64> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![5, 6, 7, 8], "{errors:?}");
    assert!(errors[0].1.starts_with("email:"), "{errors:?}");
    assert_eq!(errors[1].1, "email: NEW@example.com is already on line 3");
    assert!(errors[2].1.starts_with("full_name:"), "{errors:?}");
    assert_eq!(errors[3].1, "a cell holds a NUL character");

    let reply = app
        .graphql_as(
            &ann,
            "{ clients(first: 10) { nodes { email fullName comment attributes tags { name } } } }",
            json!({}),
        )
        .await
        .json();
    let clients = reply["data"]["clients"]["nodes"].as_array().unwrap().clone();
    let by = |email: &str| {
        clients
            .iter()
            .find(|c| c["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("{reply}"))
    };
    assert_eq!(by("old@example.com")["fullName"], "Old Renamed");
    assert_eq!(
        by("old@example.com")["attributes"],
        json!({ "plan": "pro", "seats": 2 })
    );
    assert_eq!(by("old@example.com")["tags"], json!([{ "name": "vip" }]));
    assert_eq!(by("new@example.com")["comment"], "two\nlines");
    assert_eq!(
        by("new@example.com")["tags"],
        json!([{ "name": "news" }, { "name": "vip" }])
    );
    assert_eq!(by("last@example.com")["comment"], "tab\there, back\\\\slash");
    assert_eq!(clients.len(), 3);

    // The errors as CSV (compressed too: the stream ends once); another user's job is
    // nobody's business.
    let errors_csv = |encoding: &'static str| {
        Request::get(format!("/import/{id}/errors.csv"))
            .header("authorization", format!("Bearer {ann}"))
            .header("accept-encoding", encoding)
            .body(Body::empty())
            .unwrap()
    };
    let reply = app.send(errors_csv("gzip")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-encoding"], "gzip");
    let reply = app.send(errors_csv("identity")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8(reply.body).unwrap();
    assert!(
        text.starts_with("line,message\r\n5,email:") || text.starts_with("line,message\n5,email:"),
        "{text}"
    );
    assert!(text.contains("6,email: NEW@example.com is already on line 3"), "{text}");
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let reply = app.graphql_as(&bob, JOB, json!({ "id": id })).await.json();
    assert_eq!(reply["data"]["importJob"], Value::Null);
    let reply = app
        .send(
            Request::get(format!("/import/{id}/errors.csv"))
                .header("authorization", format!("Bearer {bob}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_file_over_the_body_limit_goes_through_in_chunks() {
    let app = TestApp::dispatching(&["--body-limit", "16KiB"]).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let mut csv = String::from("email,full_name,seats\n");
    for i in 0..12_345 {
        csv.push_str(&format!("c{i}@example.com,Client {i},{i}\n"));
    }
    assert!(csv.len() > 300_000);
    let id = job_id(&upload(&app, &ann, "text/csv", csv.into_bytes()).await);
    let job = finished(&app, &ann, &id).await;
    assert_eq!(
        (
            job["status"].clone(),
            job["total"].clone(),
            job["processed"].clone(),
            job["created"].clone(),
            job["errorCount"].clone()
        ),
        (json!("DONE"), json!(12_345), json!(12_345), json!(12_345), json!(0)),
        "{job}"
    );
    let reply = app
        .graphql_as(
            &ann,
            "query($a: AudienceInput!) { audienceSize(audience: $a) }",
            json!({ "a": { "segment": { "match": "ALL", "conditions": [{ "field": "attributes.seats", "op": "GT", "value": "12000" }] } } }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["audienceSize"], 344, "{reply}");
}

#[tokio::test]
async fn uploads_are_refused_clearly_and_leave_nothing_behind() {
    let app = TestApp::dispatching(&[]).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;

    let reply = upload(&app, &ann, "text/csv", b"mail,name\na@example.com,A\n".to_vec()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["field"], "csv", "{}", reply.json());

    // A line with no end is refused before it fills the server's memory.
    let mut endless = b"email,full_name\na@example.com,".to_vec();
    endless.extend(vec![b'x'; 2 * 1024 * 1024]);
    let reply = upload(&app, &ann, "text/csv", endless).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["error"].as_str().unwrap().contains("longer than 1024 KiB"),
        "{}",
        reply.json()
    );

    let reply = upload(&app, &ann, "application/json", b"{}".to_vec()).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let reply = upload(&app, "not-a-token", "text/csv", b"email,full_name\n".to_vec()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let read_key = app
        .graphql_as(
            &ann,
            "mutation { createApiKey(name: \"ro\", scope: READ) { secret } }",
            json!({}),
        )
        .await
        .json()["data"]["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = upload(
        &app,
        &read_key,
        "text/csv",
        b"email,full_name\na@example.com,A\n".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let mut conn = app.db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT (SELECT count(*) FROM import_jobs) + (SELECT count(*) FROM import_rows) AS n"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(left.n, 0);

    // An upload whose process stopped during its COPY is forgotten by the sweep a day later.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO import_jobs (owner_id, created_at) SELECT id, now() - interval '2 days' FROM users \
             WHERE email = 'ann@example.com'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(mailwarm::clients::import::sweep(&mut conn).await.unwrap(), 1);

    // An empty file (a header only) is a job that is done at once.
    let id = job_id(&upload(&app, &ann, "text/csv", b"email,full_name\n".to_vec()).await);
    let job = finished(&app, &ann, &id).await;
    assert_eq!((job["status"].clone(), job["total"].clone()), (json!("DONE"), json!(0)));
}
