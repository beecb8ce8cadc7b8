//! memcached keys and values: any key round-trips, oversized values are a
//! clear error for that write only, a model change is a miss, and placement
//! over several servers is pinned.
#![cfg(feature = "memcache")]

use memcache::exp::AsyncMetaClient;
use octopus::{Error, Key, Model, Record, Store, Value};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore, StableRendezvous};
use octopus_test_support::memcache::{fresh_namespace, memcache_store};

#[derive(Debug, Model)]
#[octopus(table = "docs")]
struct Doc {
    #[octopus(key)]
    id: String,
    body: Vec<u8>,
}

/// The same table with one more column: another shape, another fingerprint.
#[derive(Debug, Model)]
#[octopus(table = "docs")]
struct DocV2 {
    #[octopus(key)]
    id: String,
    body: Vec<u8>,
    title: Option<String>,
}

fn doc(id: &str, len: usize) -> Record {
    Record::new(vec![Value::Text(id.into()), Value::Bytes(vec![7; len])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_spaced_keys_round_trip_without_colliding() {
    let store = memcache_store("layout-keys").await;
    let long = "k".repeat(1000);
    let keys = [
        "with space",
        "tab\there",
        "ünï",
        "line\nbreak",
        long.as_str(),
        "",
        "plain",
    ];
    for (i, k) in keys.iter().enumerate() {
        store.upsert(Doc::SCHEMA, &doc(k, i)).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            store.get(Doc::SCHEMA, &Key::from(*k)).await.unwrap(),
            Some(doc(k, i)),
            "{k:?}"
        );
        let wire = store.cache_key(Doc::SCHEMA, &Key::from(*k));
        assert!(
            wire.len() <= 250 && wire.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{wire:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_value_is_refused_for_that_write_only() {
    let store = memcache_store("layout-big").await;
    let err = store
        .upsert(Doc::SCHEMA, &doc("big", 2 * 1024 * 1024))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { what } if what.contains("`docs`") && what.contains("\"big\"") && what.contains("item limit")),
        "{err:?}"
    );
    assert_eq!(
        store.get(Doc::SCHEMA, &Key::from("big")).await.unwrap(),
        None
    );
    // The store keeps working; a value just under the limit fits.
    store
        .upsert(Doc::SCHEMA, &doc("fits", 1000 * 1000))
        .await
        .unwrap();
    assert!(
        store
            .get(Doc::SCHEMA, &Key::from("fits"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_never_reads_old_bytes_and_shares_the_row_key() {
    use octopus::{Cache, Lookup};
    let store = memcache_store("layout-shape").await;
    let key = Key::from("d");
    store.upsert(Doc::SCHEMA, &doc("d", 3)).await.unwrap();
    assert_eq!(store.get(DocV2::SCHEMA, &key).await.unwrap(), None);
    // One key per row, whatever the shape: during a rolling deploy, either
    // version's invalidation drops the row the other cached.
    assert_eq!(
        store.cache_key(Doc::SCHEMA, &key),
        store.cache_key(DocV2::SCHEMA, &key)
    );
    store.invalidate(DocV2::SCHEMA, &key).await.unwrap();
    assert_eq!(store.get(Doc::SCHEMA, &key).await.unwrap(), None);
    // A value of the other shape is a miss that a fill replaces.
    store.upsert(Doc::SCHEMA, &doc("d", 3)).await.unwrap();
    let Lookup::Miss(token) = store.lookup(DocV2::SCHEMA, &key).await.unwrap() else {
        panic!("the other shape's bytes read as a hit");
    };
    let v2 = DocV2 {
        id: "d".into(),
        body: vec![1, 2],
        title: Some("new".into()),
    };
    assert!(
        store
            .fill(DocV2::SCHEMA, &v2.to_record().unwrap(), token)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(DocV2::SCHEMA, &key).await.unwrap(),
        Some(v2.to_record().unwrap())
    );
}

fn servers() -> Vec<String> {
    vec!["127.0.0.1:11211".to_owned(), "127.0.0.1:11212".to_owned()]
}

#[test]
fn placement_of_known_keys_is_pinned() {
    // If this changes, every deployed application server would look for
    // keys on other servers than the ones that hold them.
    let s = servers();
    let placed: Vec<usize> = [
        "a",
        "b",
        "c",
        "octopus:books:0:u1",
        "octopus:books:0:u2",
        "octopus:books:0:u3",
    ]
    .iter()
    .map(|k| StableRendezvous::server_for(k.as_bytes(), &s))
    .collect();
    assert_eq!(placed, PINNED);
    // Order of the server list does not matter.
    let reversed: Vec<String> = s.iter().rev().cloned().collect();
    for k in ["a", "b", "c"] {
        let i = StableRendezvous::server_for(k.as_bytes(), &s);
        assert_eq!(
            reversed[StableRendezvous::server_for(k.as_bytes(), &reversed)],
            s[i]
        );
    }
}

// Computed independently from the definition (FNV-1a 64 of the key, then of
// the server on top, finalized with SplitMix64; highest score wins).
const PINNED: [usize; 6] = [1, 0, 0, 1, 1, 1];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_on_the_server_placement_names() {
    let options = MemcacheOptions::new(servers())
        .namespace(&fresh_namespace("layout-two"))
        .unwrap();
    let store = MemcacheStore::with_options(options).await.unwrap();
    let singles = [
        AsyncMetaClient::connect("127.0.0.1:11211").await.unwrap(),
        AsyncMetaClient::connect("127.0.0.1:11212").await.unwrap(),
    ];
    let mut per_server = [0usize; 2];
    for i in 0..40 {
        let id = format!("doc{i}");
        store.upsert(Doc::SCHEMA, &doc(&id, 1)).await.unwrap();
        let wire = store.cache_key(Doc::SCHEMA, &Key::from(id.as_str()));
        let home = StableRendezvous::server_for(wire.as_bytes(), &servers());
        per_server[home] += 1;
        assert!(
            singles[home].get(&wire).send().await.unwrap().hit(),
            "{wire} not on server {home}"
        );
        assert!(
            !singles[1 - home].get(&wire).send().await.unwrap().hit(),
            "{wire} also on server {}",
            1 - home
        );
    }
    assert!(
        per_server[0] > 5 && per_server[1] > 5,
        "keys spread over both servers: {per_server:?}"
    );
    // get_many gathers from both servers in one call.
    let keys: Vec<Key> = (0..40).map(|i| Key::from(format!("doc{i}"))).collect();
    let got = store.get_many(Doc::SCHEMA, &keys).await.unwrap();
    assert!(got.iter().all(Option::is_some));
}
