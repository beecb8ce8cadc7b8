//! A registry opens every model's table and hands out typed Daos.

use octopus::{Key, MemoryStore, Model, Plan, Store};

#[derive(Debug, Clone, PartialEq, Model)]
struct BookReview {
    #[octopus(key)]
    id: u64,
    stars: u8,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "people")]
struct Person {
    #[octopus(key)]
    name: String,
}

octopus::models! {
    /// The test application's models.
    pub struct App { reviews: BookReview, people: Person }
}

#[test]
fn default_table_is_the_snake_case_struct_name() {
    assert_eq!(BookReview::SCHEMA.table(), "book_review");
    assert_eq!(Person::SCHEMA.table(), "people");
}

#[tokio::test]
async fn open_serves_every_listed_model() {
    let primary = std::sync::Arc::new(MemoryStore::new());
    let app = App::open(Plan::from_arc(primary.clone())).await.unwrap();
    app.reviews
        .create(&mut BookReview { id: 1, stars: 5 })
        .await
        .unwrap();
    app.dao::<Person>()
        .create(&mut Person { name: "ada".into() })
        .await
        .unwrap();
    assert_eq!(
        app.dao::<BookReview>()
            .read(1)
            .await
            .unwrap()
            .unwrap()
            .stars,
        5
    );
    assert!(
        primary
            .get(Person::SCHEMA, &Key::from("ada"))
            .await
            .unwrap()
            .is_some()
    );
}
