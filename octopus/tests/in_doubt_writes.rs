//! A write whose primary call failed after the primary may have applied it
//! (its answer lost to a crash or a timeout) is in doubt: if the journal
//! then refuses it (another writer's journaled entry of the key got there
//! first), the caller is told the outcome is unknown, never a `Conflict`,
//! which would say it did not happen. A PostgreSQL restart in the middle of
//! `outage_postgres.rs`'s workload showed it: an update answered `Conflict`
//! was the row PostgreSQL ended with.

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{CachePolicy, Dao, Error, Key, MemoryStore, Model, Plan, Store, WriteOutcome};
use octopus_test_support::{Scripted, Step, check, eventually, quick_breaker};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_a_lost_answer_is_in_doubt_not_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(quick_breaker(Duration::from_millis(50)))
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = Account {
        id: 1,
        balance: 0,
        version: 0,
    };
    accounts.create(&mut a).await.unwrap();
    accounts.read(1u64).await.unwrap().unwrap();

    // B's update reaches the primary and is applied; its answer is lost
    // once the gate opens.
    let gate = Arc::new(Notify::new());
    primary.then(Step::LostAfter(gate.clone()));
    let b = {
        let (accounts, mut mine) = (accounts.clone(), a.clone());
        tokio::spawn(async move {
            mine.balance = 20;
            accounts.update(&mut mine).await
        })
    };
    primary.held.notified().await;
    // Meanwhile A's update, from the same version, finds the primary down
    // and is journaled.
    primary.then(Step::Down);
    let mut mine = a.clone();
    mine.balance = 10;
    assert_eq!(
        accounts.update(&mut mine).await.unwrap(),
        WriteOutcome::Journaled
    );
    gate.notify_one();
    match b.await.unwrap() {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.to_string().contains("may have been applied"), "{e}");
        }
        other => panic!("B's update was applied by the primary, yet: {other:?}"),
    }

    // A's entry, built on the version B's update replaced, is refused at
    // replay; the primary keeps B's row, and reads return it.
    eventually(
        "the journal to drain",
        Duration::from_secs(10),
        async || check(journal.pending() == 0, format!("{journal:?}")),
    )
    .await;
    let stored = primary
        .inner
        .get(Account::SCHEMA, &Key::UInt(1))
        .await
        .unwrap();
    assert_eq!(Account::from_record(stored.unwrap()).unwrap().balance, 20);
    assert_eq!(accounts.read(1u64).await.unwrap().unwrap().balance, 20);
    assert_eq!(journal.dead_letters().unwrap().len(), 1);
}
