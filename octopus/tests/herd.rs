//! A thundering herd on one missing-but-existing key makes one primary read.

use std::sync::Arc;
use std::time::Duration;

use octopus::{Dao, MemoryStore, Model, Plan, Store};
use octopus_test_support::{Scripted, Step};

#[derive(Debug, Clone, PartialEq, Model)]
struct Article {
    #[octopus(key)]
    id: u64,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_reads_of_a_missing_key_cause_one_primary_read() {
    let primary = Scripted::new();
    let article = Article {
        id: 1,
        body: "popular".into(),
    };
    primary
        .inner
        .insert(Article::SCHEMA, &article.to_record().unwrap())
        .await
        .unwrap();
    let cache = Arc::new(MemoryStore::new());
    let plan = Arc::new(Plan::from_arc(primary.clone()).with_cache_arc(cache));
    let articles: Dao<Article> = Dao::new(plan.clone());

    // The database takes a while to answer, as it does under a herd.
    primary.then(Step::Slow(Duration::from_millis(100)));
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let articles = articles.clone();
            tokio::spawn(async move { articles.read(1u64).await })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap().unwrap().as_ref(), Some(&article));
    }
    assert_eq!(primary.gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stats = plan.stats();
    assert_eq!(stats.primary_reads, 1);
    assert_eq!(stats.herd_followers + stats.levels[0].hits, 99, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_stop_waiting_after_the_bound_and_load_themselves() {
    let primary = Scripted::new();
    primary
        .inner
        .insert(
            Article::SCHEMA,
            &Article {
                id: 2,
                body: "b".into(),
            }
            .to_record()
            .unwrap(),
        )
        .await
        .unwrap();
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .herd_wait(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    let articles: Dao<Article> = Dao::new(plan.clone());
    // The leader's read takes far longer than followers will wait.
    primary.then(Step::Slow(Duration::from_millis(500)));
    let leader = {
        let articles = articles.clone();
        tokio::spawn(async move { articles.read(2u64).await })
    };
    while primary.gets.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let follower = articles.read(2u64).await.unwrap();
    assert_eq!(follower.unwrap().body, "b", "the follower loaded it itself");
    assert_eq!(primary.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(leader.await.unwrap().unwrap().is_some());
}
