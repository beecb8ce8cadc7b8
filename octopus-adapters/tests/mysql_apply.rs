//! `MysqlStore::apply` beyond the conformance suite, on the shared server
//! (no global settings touched): statements sized to `max_allowed_packet`,
//! a constraint the model does not know refusing the whole batch, and the
//! per-change refusals made before the transaction.
#![cfg(feature = "mysql")]

use mysql_async::prelude::Queryable;
use octopus::{Change, Error, Key, Model, Precondition, Store};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::mysql::fresh_database;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "blobs")]
struct Blob {
    #[octopus(key)]
    id: i64,
    name: String,
    data: Vec<u8>,
    #[octopus(version)]
    version: u32,
}

fn blob(id: i64, size: usize, version: u32) -> Blob {
    Blob {
        id,
        name: format!("blob {id}"),
        data: vec![(id % 251) as u8; size],
        version,
    }
}

fn create(b: &Blob) -> Change {
    Change {
        key: Key::Int(b.id),
        precondition: Precondition::Absent,
        row: Some(b.to_record().unwrap()),
    }
}

async fn ready(name: &str) -> (MysqlStore, String) {
    let url = fresh_database(name).await;
    let store = MysqlStore::new(&url).unwrap();
    store.ensure_schema(Blob::SCHEMA).await.unwrap();
    (store, url)
}

async fn max_allowed_packet(url: &str) -> usize {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let bytes: Option<u64> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    bytes.unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wide_rows_are_split_to_fit_the_packet() {
    let (store, url) = ready("apply_wide_rows").await;
    // Together about four times the packet, so one statement could not
    // carry them; each row alone fits easily.
    let packet = max_allowed_packet(&url).await;
    let size = packet * 4 / 1000;
    let blobs: Vec<Blob> = (0..1000).map(|i| blob(i, size, 1)).collect();
    let changes: Vec<Change> = blobs.iter().map(create).collect();
    let out = store.apply(Blob::SCHEMA, &changes).await.unwrap();
    assert!(
        out.iter().all(Result::is_ok),
        "{:?}",
        out.iter().find(|r| r.is_err())
    );
    for b in [&blobs[0], &blobs[499], &blobs[999]] {
        let row = store.get(Blob::SCHEMA, &Key::Int(b.id)).await.unwrap();
        assert_eq!(row, Some(b.to_record().unwrap()), "blob {}", b.id);
    }
    // upsert_many sizes its statements the same way.
    let next: Vec<_> = blobs
        .iter()
        .map(|b| blob(b.id, size, 2).to_record().unwrap())
        .collect();
    store.upsert_many(Blob::SCHEMA, &next).await.unwrap();
    let row = store.get(Blob::SCHEMA, &Key::Int(999)).await.unwrap();
    assert_eq!(row, Some(next[999].clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_of_the_table_refuses_the_whole_batch() {
    let (store, url) = ready("apply_unique_index").await;
    store
        .insert(Blob::SCHEMA, &blob(1, 8, 1).to_record().unwrap())
        .await
        .unwrap();
    let mut admin = mysql_async::Conn::from_url(url).await.unwrap();
    admin
        .query_drop("CREATE UNIQUE INDEX blobs_name ON blobs (name)")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();

    let mut clash = blob(2, 8, 1);
    clash.name = "blob 1".into();
    let changes = [create(&blob(3, 8, 1)), create(&clash)];
    let err = store.apply(Blob::SCHEMA, &changes).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { message, .. }
            if message.contains("`blobs`") && message.contains("1062")),
        "{err:?}"
    );
    // Nothing of the batch was written, not even the change that passed.
    assert_eq!(store.get(Blob::SCHEMA, &Key::Int(3)).await.unwrap(), None);
    let out = store.apply(Blob::SCHEMA, &changes[..1]).await.unwrap();
    assert!(out[0].is_ok(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_the_store_cannot_take_are_refused_one_by_one() {
    let (store, url) = ready("apply_refused_changes").await;
    let packet = max_allowed_packet(&url).await;
    let mut mismatched = create(&blob(5, 8, 1));
    mismatched.key = Key::Int(6);
    let changes = [
        create(&blob(1, packet + 1, 1)),
        mismatched,
        Change {
            key: Key::from("not an integer"),
            precondition: Precondition::Always,
            row: None,
        },
        create(&blob(2, 8, 1)),
    ];
    let out = store.apply(Blob::SCHEMA, &changes).await.unwrap();
    assert!(
        matches!(&out[0], Err(Error::Rejected { message, .. })
            if message.contains("`blobs`") && message.contains("key 1")
                && message.contains("max_allowed_packet")),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Err(Error::Invalid { what }) if what.contains("key 6")),
        "{out:?}"
    );
    assert!(matches!(&out[2], Err(Error::Invalid { .. })), "{out:?}");
    assert!(out[3].is_ok(), "{out:?}");
    for id in [1, 5, 6] {
        let row = store.get(Blob::SCHEMA, &Key::Int(id)).await.unwrap();
        assert_eq!(row, None, "blob {id}");
    }
    assert!(
        store
            .get(Blob::SCHEMA, &Key::Int(2))
            .await
            .unwrap()
            .is_some()
    );
}
