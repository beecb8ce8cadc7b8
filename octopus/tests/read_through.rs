//! A plan's caches fill on a miss and are invalidated by writes.

use std::sync::Arc;

use octopus::{Dao, Key, MemoryOptions, MemoryStore, Model, Plan, Store};

#[derive(Debug, Clone, PartialEq, Model)]
struct Page {
    #[octopus(key)]
    slug: String,
    body: String,
}

struct Setup {
    primary: Arc<MemoryStore>,
    cache: Arc<MemoryStore>,
    pages: Dao<Page>,
}

async fn setup() -> Setup {
    let primary = Arc::new(MemoryStore::with_options(
        MemoryOptions::new().name("primary"),
    ));
    let cache = Arc::new(MemoryStore::with_options(
        MemoryOptions::new().name("cache"),
    ));
    let plan = Plan::from_arc(primary.clone()).with_cache_arc(cache.clone());
    let pages = Dao::open(Arc::new(plan)).await.unwrap();
    Setup {
        primary,
        cache,
        pages,
    }
}

fn key(s: &str) -> Key {
    Key::from(s)
}

#[tokio::test]
async fn a_read_miss_fills_the_cache() {
    let s = setup().await;
    s.pages
        .create(&mut Page {
            slug: "home".into(),
            body: "hi".into(),
        })
        .await
        .unwrap();
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("home"))
            .await
            .unwrap()
            .is_none(),
        "create does not fill"
    );
    s.pages.read("home").await.unwrap().unwrap();
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("home"))
            .await
            .unwrap()
            .is_some(),
        "read filled the cache"
    );
}

#[tokio::test]
async fn a_cached_row_is_served_from_the_cache() {
    let s = setup().await;
    s.pages
        .create(&mut Page {
            slug: "a".into(),
            body: "v1".into(),
        })
        .await
        .unwrap();
    s.pages.read("a").await.unwrap();
    // Remove it behind the plan's back: the cache still answers.
    s.primary.delete(Page::SCHEMA, &key("a")).await.unwrap();
    assert_eq!(s.pages.read("a").await.unwrap().unwrap().body, "v1");
}

#[tokio::test]
async fn writes_invalidate_the_cache() {
    let s = setup().await;
    let mut page = Page {
        slug: "b".into(),
        body: "v1".into(),
    };
    s.pages.create(&mut page).await.unwrap();
    s.pages.read("b").await.unwrap();
    page.body = "v2".into();
    s.pages.update(&mut page).await.unwrap();
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("b"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.pages.read("b").await.unwrap().unwrap().body, "v2");
    s.pages.delete("b").await.unwrap();
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("b"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.pages.read("b").await.unwrap(), None);
}

#[tokio::test]
async fn read_many_fills_only_what_missed() {
    let s = setup().await;
    for slug in ["x", "y", "z"] {
        s.pages
            .create(&mut Page {
                slug: slug.into(),
                body: slug.into(),
            })
            .await
            .unwrap();
    }
    s.pages.read("x").await.unwrap();
    let got = s.pages.read_many(["x", "y", "nope"]).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|p| p.as_ref().map(|p| p.slug.as_str()))
            .collect::<Vec<_>>(),
        [Some("x"), Some("y"), None]
    );
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("y"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.cache
            .get(Page::SCHEMA, &key("z"))
            .await
            .unwrap()
            .is_none()
    );
}
