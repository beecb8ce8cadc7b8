//! MySQL tables are created with faithful types, and an existing table with
//! columns the model cannot use is refused at open, naming table and column.
#![cfg(feature = "mysql")]

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use octopus::{Dao, Error, Model, Plan};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::mysql::{fresh_database, mysql_store};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    owner: String,
    balance: i64,
    note: Option<String>,
}

async fn raw(url: &str, sql: &str) {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    conn.query_drop(sql).await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_column_type_is_named() {
    let url = fresh_database("schema_conflict").await;
    raw(
        &url,
        "CREATE TABLE accounts (id BIGINT UNSIGNED PRIMARY KEY, owner LONGTEXT NOT NULL, \
         balance VARCHAR(20) NOT NULL, note LONGTEXT NULL)",
    )
    .await;
    let store = MysqlStore::new(&url).unwrap();
    let err = Dao::<Account>::open(Arc::new(Plan::new(store)))
        .await
        .unwrap_err();
    match &err {
        Error::SchemaMismatch {
            table: "accounts",
            column,
            reason,
        } => {
            assert_eq!(column, "balance");
            assert!(
                reason.contains("varchar") && reason.contains("BIGINT"),
                "{reason}"
            );
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_key_where_the_model_is_unsigned_is_named() {
    let url = fresh_database("schema_unsigned").await;
    raw(
        &url,
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner LONGTEXT NOT NULL, \
         balance BIGINT NOT NULL, note LONGTEXT NULL)",
    )
    .await;
    let store = MysqlStore::new(&url).unwrap();
    let err = Dao::<Account>::open(Arc::new(Plan::new(store)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::SchemaMismatch { column, .. } if column == "id"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_key_over_the_column_limit_is_invalid_and_writes_nothing() {
    #[derive(Debug, Clone, PartialEq, Model)]
    #[octopus(table = "labels")]
    struct Label {
        #[octopus(key)]
        name: String,
    }
    let store = mysql_store("key_limit").await;
    let labels: Dao<Label> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    let mut label = Label {
        name: "é".repeat(769),
    };
    let err = labels.create(&mut label).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { what } if what.contains("`labels`") && what.contains("769")),
        "{err:?}"
    );
    let fits = "é".repeat(768);
    labels
        .create(&mut Label { name: fits.clone() })
        .await
        .unwrap();
    assert_eq!(
        labels.read(fits.as_str()).await.unwrap().unwrap().name,
        fits
    );
}
