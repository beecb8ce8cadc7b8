//! MySQL calls never hang and are classified: a server that accepts but never
//! answers, and an address that refuses, both fail with `Unavailable` within
//! the deadline; credentials never appear in errors.
#![cfg(feature = "mysql")]

use std::time::Duration;

use octopus::{Error, Key, Model, Store};
use octopus_adapters::mysql::MysqlStore;
use tokio::net::TcpListener;

#[derive(Debug, Model)]
struct Thing {
    #[octopus(key)]
    id: i64,
}

/// Accepts connections and never sends a byte: the handshake never starts.
async fn blackhole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// A port nothing listens on.
async fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_server_fails_within_the_deadline() {
    let (port, task) = blackhole().await;
    let store = MysqlStore::new(&format!(
        "mysql://root@127.0.0.1:{port}/test?deadline_ms=300"
    ))
    .unwrap();
    // Bounded far above the deadline: reaching it means the call hung.
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        store.get(Thing::SCHEMA, &Key::Int(1)),
    )
    .await
    .expect("the call hung past its deadline");
    let err = out.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("300 ms deadline"), "{err}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_and_hides_the_password() {
    let port = refused_port().await;
    let store = MysqlStore::new(&format!(
        "mysql://app:hunter2@127.0.0.1:{port}/test?deadline_ms=1000"
    ))
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), store.ensure_schema(Thing::SCHEMA))
        .await
        .expect("the call hung past its deadline");
    let err = out.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {store:?}");
    assert!(!shown.contains("hunter2"), "password leaked: {shown}");
    assert!(
        shown.contains(&format!("mysql://app@127.0.0.1:{port}/test")),
        "{shown}"
    );
}

#[tokio::test]
async fn bad_urls_are_config_errors_naming_the_parameter() {
    let err = MysqlStore::new("mysql://root:pw@127.0.0.1/test?pool_size=zero").unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, reason } if reason.contains("pool_size") && !key.contains("pw")),
        "{err:?}"
    );
    let err = MysqlStore::new("mysql://root@127.0.0.1").unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("database")),
        "{err:?}"
    );
    let err = MysqlStore::new("mysql://root@127.0.0.1/test?deadline_ms=-1").unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("deadline_ms")),
        "{err:?}"
    );
}
