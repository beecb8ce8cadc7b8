//! A memcached that goes away makes calls fail with `Unavailable` within the
//! configured timeout, and a restarted one serves again.
#![cfg(feature = "memcache")]

use std::time::Duration;

use octopus::{Error, Key, Model, Record, Store, Value};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_test_support::memcache::OwnMemcached;

#[derive(Debug, Model)]
struct Session {
    #[octopus(key)]
    id: String,
    user: u64,
}

fn session(id: &str, user: u64) -> Record {
    Record::new(vec![Value::Text(id.into()), Value::UInt(user)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_a_restarted_one_serves() {
    let mut server = OwnMemcached::start().await;
    let options = MemcacheOptions::from_url(&server.url())
        .unwrap()
        .timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200));
    let store = MemcacheStore::with_options(options).await.unwrap();
    let key = Key::from("s1");
    store
        .upsert(Session::SCHEMA, &session("s1", 7))
        .await
        .unwrap();
    assert_eq!(
        store.get(Session::SCHEMA, &key).await.unwrap(),
        Some(session("s1", 7))
    );

    server.stop();
    for _ in 0..3 {
        // Bounded far above the timeout: reaching it means the call hung.
        let out = tokio::time::timeout(Duration::from_secs(5), store.get(Session::SCHEMA, &key))
            .await
            .expect("the call hung past its timeout");
        assert!(matches!(out, Err(Error::Unavailable { .. })), "{out:?}");
        let out = tokio::time::timeout(
            Duration::from_secs(5),
            store.upsert(Session::SCHEMA, &session("s1", 8)),
        )
        .await
        .expect("the call hung past its timeout");
        assert!(matches!(out, Err(Error::Unavailable { .. })), "{out:?}");
    }

    server.restart().await;
    // The restarted server is empty; the store reconnects by itself.
    assert_eq!(store.get(Session::SCHEMA, &key).await.unwrap(), None);
    store
        .upsert(Session::SCHEMA, &session("s1", 9))
        .await
        .unwrap();
    assert_eq!(
        store.get(Session::SCHEMA, &key).await.unwrap(),
        Some(session("s1", 9))
    );
}
