//! PostgreSQL setup shared by `postgres.rs` and `postgres_replay.rs`.

use octopus_test_support::postgres::{fresh_schema, postgres_url};
use tokio_postgres::{Client, NoTls};

/// A fresh schema for benchmark `name`: the store URL (with `schema=`) and
/// the schema's name.
pub async fn schema(name: &str) -> (String, String) {
    let url = fresh_schema(&format!("bench_{name}")).await;
    let schema = url.rsplit_once("schema=").unwrap().1.to_owned();
    (url, schema)
}

/// Raw tokio-postgres as an expert uses it: one connection (TCP, as the
/// store's), its tables found through `search_path`, statements prepared
/// once and kept.
pub async fn raw_client(schema: &str) -> Client {
    let mut config: tokio_postgres::Config = postgres_url().parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Lets the server finish the work a load leaves behind (vacuum and
/// statistics of `table`, a checkpoint) before a group is measured, so
/// autovacuum does not land in one side's measurements only.
pub async fn settle(raw: &Client, table: &str) {
    // One statement each: VACUUM cannot run in a multi-statement batch.
    raw.batch_execute(&format!("VACUUM (ANALYZE) {table}"))
        .await
        .unwrap();
    raw.batch_execute("CHECKPOINT").await.unwrap();
}

/// sqlx's PostgreSQL pool (16 connections, its statement cache on).
pub async fn sqlx_pool(schema: &str) -> sqlx::PgPool {
    let options: sqlx::postgres::PgConnectOptions = postgres_url().parse().unwrap();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options.options([("search_path", schema)]))
        .await
        .unwrap()
}

/// `INSERT … ON CONFLICT … DO UPDATE` of `rows` rows of `columns` values.
pub fn multirow_upsert(table: &str, columns: &[&str], rows: usize) -> String {
    let width = columns.len();
    let groups: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET {}",
        columns.join(", "),
        groups.join(", "),
        set_excluded(columns)
    )
}

/// The same upsert as one `UNNEST` of an array per column (`types`).
pub fn unnest_upsert(table: &str, columns: &[&str], types: &[&str]) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM UNNEST({}) ON CONFLICT (id) DO UPDATE SET {}",
        columns.join(", "),
        arrays.join(", "),
        set_excluded(columns)
    )
}

fn set_excluded(columns: &[&str]) -> String {
    let set: Vec<String> = columns[1..]
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    set.join(", ")
}
