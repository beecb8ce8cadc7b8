//! A unique index the model does not know about (one a DBA added): a create
//! that clashes with it is refused with the database's message, not taken
//! for a duplicate of the key.
#![cfg(all(feature = "sqlite", feature = "mysql"))]

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use octopus::{Dao, Error, Model, Plan};
use octopus_adapters::mysql::MysqlStore;
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::mysql::fresh_database;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "people")]
struct Person {
    #[octopus(key)]
    id: String,
    email: String,
}

fn person(id: &str, email: &str) -> Person {
    Person {
        id: id.into(),
        email: email.into(),
    }
}

async fn clash(people: &Dao<Person>) {
    people
        .create(&mut person("a", "x@example.com"))
        .await
        .unwrap();
    let key = people
        .create(&mut person("a", "y@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(key, Error::AlreadyExists { .. }), "{key}");
    let email = people
        .create(&mut person("b", "x@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&email, Error::Rejected { message, .. } if message.contains("email")),
        "{email}"
    );
    assert_eq!(people.read("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tells_a_unique_index_from_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let people: Dao<Person> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE UNIQUE INDEX people_email ON people (email)")
        .unwrap();
    clash(&people).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tells_a_unique_index_from_the_key() {
    let url = fresh_database("unique_index").await;
    let store = MysqlStore::new(&url).unwrap();
    let people: Dao<Person> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    let mut conn = mysql_async::Conn::from_url(format!("{url}?prefer_socket=false"))
        .await
        .unwrap();
    conn.query_drop("CREATE UNIQUE INDEX people_email ON people (email(100))")
        .await
        .unwrap();
    clash(&people).await;
}
