//! `Store` is object-safe: a boxed store works behind a plan and a Dao.

use std::sync::Arc;

use octopus::{Dao, Key, MemoryStore, Model, Plan, Store};

#[derive(Debug, Clone, PartialEq, Model)]
struct Item {
    #[octopus(key)]
    id: i64,
    name: String,
}

#[tokio::test]
async fn boxed_store_serves_a_dao() {
    let boxed: Box<dyn Store> = Box::new(MemoryStore::new());
    boxed.ensure_schema(Item::SCHEMA).await.unwrap();
    let shared: Arc<dyn Store> = Arc::from(boxed);
    let items: Dao<Item> = Dao::open(Arc::new(Plan::from_arc(shared.clone())))
        .await
        .unwrap();

    items
        .create(&mut Item {
            id: 7,
            name: "seven".into(),
        })
        .await
        .unwrap();
    let raw = shared
        .get(Item::SCHEMA, &Key::Int(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Item::from_record(raw).unwrap().name, "seven");
    assert_eq!(shared.name(), "memory");
}
