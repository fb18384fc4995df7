//! Migrations: they apply to an empty database, each down.sql undoes its up.sql, the
//! table definitions in src/db/schema.rs match them, and instances starting together on
//! one empty database migrate it exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{ServerProcess, TestDb};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

#[derive(diesel::QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

async fn public_columns(db: &TestDb) -> Vec<Column> {
    let mut conn = db.conn().await;
    diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name <> '__diesel_schema_migrations' ORDER BY table_name, ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_and_revert_cleanly() {
    let db = TestDb::empty().await;
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();

    assert_eq!(
        mailwarm::db::migrations::run_pending(&db.url).await.unwrap(),
        migrations
    );
    let applied = public_columns(&db).await;
    assert!(applied.iter().any(|c| c.table_name == "deliveries"));
    // Idempotent: nothing left to apply.
    assert_eq!(mailwarm::db::migrations::run_pending(&db.url).await.unwrap(), 0);

    assert_eq!(mailwarm::db::migrations::revert_all(&db.url).await.unwrap(), migrations);
    let left = public_columns(&db).await;
    assert!(left.is_empty(), "down.sql left tables behind: {left:?}");

    // And up again from there, to the same tables.
    assert_eq!(
        mailwarm::db::migrations::run_pending(&db.url).await.unwrap(),
        migrations
    );
    assert_eq!(public_columns(&db).await.len(), applied.len());
}

/// Reads `table! { name (..) { column -> Type, } }` blocks from src/db/schema.rs.
fn declared_tables() -> BTreeMap<String, Vec<(String, String)>> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/db/schema.rs")).unwrap();
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(name) = line
            .strip_suffix('{')
            .map(str::trim)
            .filter(|l| l.contains('(') && !l.contains("table!"))
        {
            current = Some(name.split_whitespace().next().unwrap().to_owned());
            tables.insert(current.clone().unwrap(), Vec::new());
        } else if let (Some(table), Some((column, ty))) = (&current, line.trim_end_matches(',').split_once(" -> ")) {
            tables.get_mut(table).unwrap().push((column.to_owned(), ty.to_owned()));
        } else if line == "}" {
            current = None;
        }
    }
    tables
}

#[tokio::test]
async fn schema_rs_matches_the_migrated_database() {
    let db = TestDb::migrated().await;
    let mut actual: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for column in public_columns(&db).await {
        let base = match column.data_type.as_str() {
            "uuid" => "Uuid",
            "text" => "Text",
            "integer" => "Int4",
            "bigint" => "Int8",
            "boolean" => "Bool",
            "bytea" => "Bytea",
            "timestamp with time zone" => "Timestamptz",
            "date" => "Date",
            "jsonb" => "Jsonb",
            other => panic!("no diesel type mapped for {other}"),
        };
        let ty = if column.is_nullable == "YES" {
            format!("Nullable<{base}>")
        } else {
            base.to_owned()
        };
        actual
            .entry(column.table_name)
            .or_default()
            .push((column.column_name, ty));
    }
    let declared = declared_tables();
    assert_eq!(declared.keys().collect::<Vec<_>>(), actual.keys().collect::<Vec<_>>());
    for (table, columns) in &actual {
        assert_eq!(&declared[table], columns, "table {table} differs from src/db/schema.rs");
    }
}

#[tokio::test]
async fn two_servers_starting_at_once_on_an_empty_database_both_come_up() {
    let db = TestDb::empty().await;
    let logs = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let mut first = ServerProcess::spawn(&[], &env, logs.path());
    let mut second = ServerProcess::spawn(&[], &env, logs.path());
    first.wait_ready(Duration::from_secs(60)).await;
    second.wait_ready(Duration::from_secs(60)).await;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await;
    let applied: Count = diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations")
        .get_result(&mut conn)
        .await
        .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied.n as usize, migrations);
    // Exactly one of them applied the migrations; the other waited on the lock and found none.
    let appliers = [first.log(), second.log()]
        .iter()
        .filter(|log| log.contains("applied migration"))
        .count();
    assert_eq!(appliers, 1, "first:\n{}\nsecond:\n{}", first.log(), second.log());
}
