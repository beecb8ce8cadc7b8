//! MySQL failover and lock behaviour against a MariaDB server of the test's
//! own (global settings change there, never on the shared server):
//!
//! - a server switched to read-only (a replica, a primary being failed over)
//!   fails writes with `Unavailable` and still serves reads;
//! - a write blocked on a row lock fails `Unavailable` within its deadline
//!   and never commits afterwards;
//! - a deadlock victim is run again and commits;
//! - a connection abandoned in the middle of a statement is closed, never
//!   handed out again with its late answer pending.
#![cfg(feature = "mysql")]

use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::{Change, Error, Key, Model, Precondition, Store};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::mysql::{APP_USER, PrivateMariadb};
use octopus_test_support::{check, eventually};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "items")]
struct Item {
    #[octopus(key)]
    id: i64,
    label: String,
    #[octopus(version)]
    version: u32,
}

fn item(id: i64, label: &str, version: u32) -> Item {
    Item {
        id,
        label: label.into(),
        version,
    }
}

fn put(i: &Item, precondition: Precondition) -> Change {
    Change {
        key: Key::Int(i.id),
        precondition,
        row: Some(i.to_record().unwrap()),
    }
}

/// A store on `db` with the items `ids` (labelled "before", version 1).
async fn store_with(db: &PrivateMariadb, params: &str, ids: &[i64]) -> MysqlStore {
    let store = MysqlStore::new(&db.app_url(params)).unwrap();
    store.ensure_schema(Item::SCHEMA).await.unwrap();
    for &id in ids {
        let row = item(id, "before", 1).to_record().unwrap();
        store.insert(Item::SCHEMA, &row).await.unwrap();
    }
    store
}

/// The label of item `id`, read on a connection of its own.
async fn label(db: &PrivateMariadb, id: i64) -> Option<String> {
    let mut conn = db.app().await;
    let label = conn
        .exec_first("SELECT label FROM items WHERE id = ?", (id,))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    label
}

/// Checks for `secs` seconds, every 50 ms, that item `id` keeps `expected`.
async fn stays(db: &PrivateMariadb, id: i64, expected: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        assert_eq!(label(db, id).await.as_deref(), Some(expected), "item {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_unavailable<T: std::fmt::Debug>(out: Result<T, Error>, what: &str) {
    let err = out.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{what}: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_is_unavailable_for_writes_and_still_reads() {
    let db = PrivateMariadb::start().await;
    let store = store_with(&db, "deadline_ms=2000", &[1]).await;
    let mut root = db.root().await;
    root.query_drop("SET GLOBAL read_only = 1").await.unwrap();

    let two = item(2, "two", 1).to_record().unwrap();
    let err = store.insert(Item::SCHEMA, &two).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { source, .. } if source.to_string().contains("1290")),
        "{err:?}"
    );
    let next = item(1, "after", 2).to_record().unwrap();
    assert_unavailable(store.update(Item::SCHEMA, &next, Some(1)).await, "update");
    assert_unavailable(store.delete(Item::SCHEMA, &Key::Int(1)).await, "delete");
    let changes = [put(&item(1, "after", 2), Precondition::Version(1))];
    assert_unavailable(store.apply(Item::SCHEMA, &changes).await, "apply");
    let row = store.get(Item::SCHEMA, &Key::Int(1)).await.unwrap();
    assert_eq!(row, Some(item(1, "before", 1).to_record().unwrap()));

    root.query_drop("SET GLOBAL read_only = 0").await.unwrap();
    store.insert(Item::SCHEMA, &two).await.unwrap();
    let out = store.apply(Item::SCHEMA, &changes).await.unwrap();
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(label(&db, 1).await.as_deref(), Some("after"));
    root.disconnect().await.unwrap();
}

/// Holds item `id`'s row lock in an open transaction of another connection.
async fn hold_lock(db: &PrivateMariadb, id: i64) -> mysql_async::Conn {
    let mut holder = db.app().await;
    holder.query_drop("START TRANSACTION").await.unwrap();
    let _: Option<i64> = holder
        .exec_first("SELECT id FROM items WHERE id = ? FOR UPDATE", (id,))
        .await
        .unwrap();
    holder
}

/// Runs `call` (blocked by a lock) and checks it fails `Unavailable`
/// within about the 800 ms deadline, ended by the server's own statement
/// limit (1969), not by the client giving up.
async fn fails_within_deadline<T: std::fmt::Debug>(
    what: &str, call: impl std::future::Future<Output = Result<T, Error>>,
) {
    let started = Instant::now();
    let err = call.await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::Unavailable { source, .. } if source.to_string().contains("1969")),
        "{what}: {err:?}"
    );
    assert!(
        took < Duration::from_millis(1200),
        "{what} took {took:?} with an 800 ms deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_past_its_deadline_never_commits() {
    let db = PrivateMariadb::start().await;
    let store = store_with(&db, "deadline_ms=800", &[1]).await;
    let row = item(1, "late", 2).to_record().unwrap();

    let mut holder = hold_lock(&db, 1).await;
    fails_within_deadline("update", store.update(Item::SCHEMA, &row, Some(1))).await;
    fails_within_deadline("upsert", store.upsert(Item::SCHEMA, &row)).await;
    holder.query_drop("ROLLBACK").await.unwrap();
    // Neither write may commit once the lock is gone.
    stays(&db, 1, "before", 2).await;

    let mut holder = hold_lock(&db, 1).await;
    let changes = [put(&item(1, "late", 2), Precondition::Version(1))];
    fails_within_deadline("apply", store.apply(Item::SCHEMA, &changes)).await;
    holder.query_drop("ROLLBACK").await.unwrap();
    stays(&db, 1, "before", 2).await;
    holder.disconnect().await.unwrap();

    // The pool is sound afterwards.
    store.update(Item::SCHEMA, &row, Some(1)).await.unwrap();
    assert_eq!(label(&db, 1).await.as_deref(), Some("late"));
}

/// A global status counter of the server.
async fn status(root: &mut mysql_async::Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = root
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap();
    row.map_or(0, |(_, n)| n)
}

async fn row_lock_waits(root: &mut mysql_async::Conn) -> u64 {
    status(root, "Innodb_row_lock_current_waits").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_is_run_again_and_commits() {
    let db = PrivateMariadb::start().await;
    let ids: Vec<i64> = (1..=20).collect();
    let store = store_with(&db, "deadline_ms=10000", &ids).await;
    let mut root = db.root().await;

    // The other transaction changes rows 10..=20 first, so it weighs more
    // than the store's and InnoDB picks the store's as the victim; then it
    // locks row 2.
    let mut other = db.app().await;
    other.query_drop("START TRANSACTION").await.unwrap();
    other
        .query_drop("UPDATE items SET label = 'other' WHERE id >= 10")
        .await
        .unwrap();
    let _: Option<i64> = other
        .query_first("SELECT id FROM items WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();

    // The store locks row 1, then waits for row 2.
    let changes = [
        put(&item(1, "store", 2), Precondition::Version(1)),
        put(&item(2, "store", 2), Precondition::Version(1)),
    ];
    let applying = tokio::spawn({
        let store = store.clone();
        async move { store.apply(Item::SCHEMA, &changes).await }
    });
    eventually(
        "the store's apply to wait for row 2",
        Duration::from_secs(5),
        async || {
            let waits = row_lock_waits(&mut root).await;
            check(waits == 1, format!("{waits} row lock waits"))
        },
    )
    .await;
    // Row 1 closes the cycle: the store's transaction is the victim.
    let _: Option<i64> = other
        .query_first("SELECT id FROM items WHERE id = 1 FOR UPDATE")
        .await
        .expect("the other transaction must not be the deadlock victim");
    other.query_drop("ROLLBACK").await.unwrap();

    let out = applying.await.unwrap().unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(label(&db, 1).await.as_deref(), Some("store"));
    assert_eq!(label(&db, 2).await.as_deref(), Some("store"));
    let deadlocks = status(&mut root, "Innodb_deadlocks").await;
    assert_eq!(deadlocks, 1, "one deadlock, and the victim run again");
    root.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_abandoned_mid_statement_is_not_reused() {
    let db = PrivateMariadb::start().await;
    store_with(&db, "deadline_ms=2000", &[1, 2]).await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], db.port).into())
        .await
        .unwrap();
    let url = format!(
        "mysql://{}@{}/test?deadline_ms=300&pool_size=1",
        APP_USER,
        proxy.addr()
    );
    let store = MysqlStore::new(&url).unwrap();
    store.get(Item::SCHEMA, &Key::Int(2)).await.unwrap();
    assert_eq!(proxy.connections(), 1);

    // The answer to this read arrives after the deadline.
    proxy.set(Mode::Latency(Duration::from_secs(1))).await;
    assert_unavailable(store.get(Item::SCHEMA, &Key::Int(1)).await, "slow read");
    proxy.set(Mode::Pass).await;

    // A reused connection would read row 1's late answer here.
    let row = store.get(Item::SCHEMA, &Key::Int(2)).await.unwrap();
    assert_eq!(row, Some(item(2, "before", 1).to_record().unwrap()));
    assert_eq!(
        proxy.connections(),
        2,
        "the abandoned connection was closed"
    );
}
