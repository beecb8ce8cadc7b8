//! A plan with a journal: during an outage writes are journaled and readable;
//! when the primary returns the journal drains in order, writes that arrive
//! meanwhile queue behind it, and the primary ends with the last write per
//! key. Versions are compared, and a restart mid-drain loses nothing.

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{
    CachePolicy, Dao, Deletion, Key, MemoryStore, Model, Plan, Record, Store, WriteOutcome,
};
use octopus_test_support::{Scripted, Step, check, eventually, quick_breaker};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

async fn plan(primary: &Arc<Scripted>, dir: &std::path::Path) -> Arc<Plan> {
    let journal = Journal::open(dir, JournalOptions::default().segment_bytes(2000)).unwrap();
    Arc::new(
        Plan::builder(primary.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(quick_breaker(Duration::from_millis(50)))
            .journal(journal)
            .build()
            .unwrap(),
    )
}

async fn drained(plan: &Plan) {
    if tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .is_err()
    {
        panic!("the journal did not drain: {:?}", plan.stats());
    }
}

fn pending(plan: &Plan) -> u64 {
    plan.stats().fallback.unwrap().pending
}

async fn stored(primary: &Scripted, id: u64) -> Option<Account> {
    primary
        .inner
        .get(Account::SCHEMA, &Key::UInt(id))
        .await
        .unwrap()
        .map(|r| Account::from_record(r).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_journaled_served_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let plan = plan(&primary, dir.path()).await;
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = Account {
        id: 1,
        balance: 10,
        version: 0,
    };
    assert_eq!(
        accounts.create(&mut a).await.unwrap(),
        WriteOutcome::Primary
    );

    primary.set_down(true);
    a.balance = 20;
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );
    let mut b = Account {
        id: 2,
        balance: 5,
        version: 0,
    };
    assert_eq!(
        accounts.create(&mut b).await.unwrap(),
        WriteOutcome::Journaled
    );
    let mut c = Account {
        id: 3,
        balance: 7,
        version: 0,
    };
    accounts.create(&mut c).await.unwrap();
    assert_eq!(accounts.delete(3u64).await.unwrap(), Deletion::Journaled);
    for i in 10..60 {
        accounts
            .create(&mut Account {
                id: i,
                balance: i as i64,
                version: 0,
            })
            .await
            .unwrap();
    }
    // Reads during the outage see the journaled writes (read-your-writes).
    assert_eq!(accounts.read(1u64).await.unwrap().unwrap().balance, 20);
    assert_eq!(accounts.read(2u64).await.unwrap().unwrap().balance, 5);
    assert_eq!(accounts.read(3u64).await.unwrap(), None);
    // A stale update during the outage is still a conflict.
    let mut stale = Account {
        id: 1,
        balance: 99,
        version: 1,
    };
    assert!(matches!(
        accounts.update(&mut stale).await,
        Err(octopus::Error::Conflict { .. })
    ));
    assert_eq!(
        stored(&primary, 1).await.unwrap().balance,
        10,
        "the primary has not seen it yet"
    );

    primary.set_down(false);
    // Writes keep arriving while it drains: they queue behind the journal.
    a.balance = 30;
    accounts.update(&mut a).await.unwrap();
    drained(&plan).await;
    assert_eq!(stored(&primary, 1).await.unwrap(), a);
    assert_eq!(stored(&primary, 2).await.unwrap(), b);
    assert_eq!(stored(&primary, 3).await, None);
    for i in 10..60 {
        assert_eq!(stored(&primary, i).await.unwrap().balance, i as i64);
    }
    let stats = plan.stats().fallback.unwrap();
    assert_eq!(stats.pending, 0);
    assert!(stats.replayed >= 54, "{stats:?}");
    // Drained segments are gone; new writes go to the primary again.
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jsonl")
        })
        .count();
    assert_eq!(segments, 1);
    a.balance = 40;
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Primary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_never_clobbers_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let plan = plan(&primary, dir.path()).await;
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = Account {
        id: 1,
        balance: 1,
        version: 0,
    };
    accounts.create(&mut a).await.unwrap();
    primary.set_down(true);
    a.balance = 2;
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );
    // Another writer (another process) reached the primary with version 5.
    let newer = Account {
        id: 1,
        balance: 500,
        version: 5,
    };
    primary
        .inner
        .upsert(Account::SCHEMA, &newer.to_record().unwrap())
        .await
        .unwrap();
    primary.set_down(false);
    drained(&plan).await;
    assert_eq!(stored(&primary, 1).await.unwrap(), newer);
    let stats = plan.stats().fallback.unwrap();
    assert_eq!((stats.dead_letters, stats.replayed), (1, 0), "{stats:?}");
    // The journaled row the cache was given is gone with its entry: reads
    // return the primary's row.
    assert_eq!(accounts.read(1u64).await.unwrap(), Some(newer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_pending_journal_starts_draining_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    {
        let plan = plan(&primary, dir.path()).await;
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        primary.set_down(true);
        for i in 0..100 {
            accounts
                .create(&mut Account {
                    id: i,
                    balance: i as i64,
                    version: 0,
                })
                .await
                .unwrap();
        }
        assert_eq!(pending(&plan), 100);
        plan.close().await.unwrap();
    }
    // The process restarts while the primary is still down: the closed
    // journal's lock is free at once.
    let plan = plan(&primary, dir.path()).await;
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    assert_eq!(pending(&plan), 100);
    assert_eq!(
        accounts.read(42u64).await.unwrap().unwrap().balance,
        42,
        "pending writes readable after restart"
    );
    // New writes queue behind the pending ones.
    let mut w = accounts.read(7u64).await.unwrap().unwrap();
    w.balance = 700;
    assert_eq!(
        accounts.update(&mut w).await.unwrap(),
        WriteOutcome::Journaled
    );
    primary.set_down(false);
    drained(&plan).await;
    for i in 0..100 {
        let expect = if i == 7 { 700 } else { i as i64 };
        assert_eq!(
            stored(&primary, i).await.unwrap().balance,
            expect,
            "account {i}"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct AccountV2 {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
    owner: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_does_not_fit_the_model_is_dead_lettered_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let old = Account {
            id: 1,
            balance: 3,
            version: 1,
        };
        journal
            .append(
                Account::SCHEMA,
                &octopus::Write::Insert(old.to_record().unwrap()),
            )
            .await
            .unwrap();
    }
    // The model gained a required column since the entry was written.
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _: Dao<AccountV2> = Dao::open(plan.clone()).await.unwrap();
    drained(&plan).await;
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.seq, 1);
    assert!(letters[0].error.contains("`owner`"), "{}", letters[0].error);
    assert_eq!(plan.stats().fallback.unwrap().dead_letters, 1);
    let r: Option<Record> = primary
        .inner
        .get(AccountV2::SCHEMA, &Key::UInt(1))
        .await
        .unwrap();
    assert!(r.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_draining_queue_behind_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let plan = plan(&primary, dir.path()).await;
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    primary.set_down(true);
    let mut a = Account {
        id: 1,
        balance: 1,
        version: 0,
    };
    assert_eq!(
        accounts.create(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );

    // The primary is back, but the replayer's first call is held up: the
    // journal is still draining.
    let gate = Arc::new(tokio::sync::Notify::new());
    primary.then(Step::Gate(gate.clone()));
    primary.set_down(false);
    let calls = primary.calls();
    eventually(
        "the replayer's first call",
        Duration::from_secs(5),
        async || check(primary.calls() > calls, primary.calls()),
    )
    .await;
    for balance in 2..6 {
        a.balance = balance;
        assert_eq!(
            accounts.update(&mut a).await.unwrap(),
            WriteOutcome::Journaled,
            "queued behind the journal"
        );
    }
    assert_eq!(stored(&primary, 1).await, None);
    gate.notify_one();
    drained(&plan).await;
    assert_eq!(
        stored(&primary, 1).await.unwrap(),
        a,
        "applied in order: the last write wins"
    );
    a.balance = 9;
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Primary,
        "back to the primary once empty"
    );
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct AccountWithNote {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
    note: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_from_an_older_compatible_model_is_applied_by_column_name() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let old = Account {
            id: 4,
            balance: 44,
            version: 1,
        };
        journal
            .append(
                Account::SCHEMA,
                &octopus::Write::Insert(old.to_record().unwrap()),
            )
            .await
            .unwrap();
    }
    // The model gained a nullable column: the old entry still fits.
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal)
            .build()
            .unwrap(),
    );
    let accounts: Dao<AccountWithNote> = Dao::open(plan.clone()).await.unwrap();
    assert_eq!(
        accounts.read(4u64).await.unwrap().unwrap().balance,
        44,
        "readable while pending"
    );
    drained(&plan).await;
    let row = primary
        .inner
        .get(AccountWithNote::SCHEMA, &Key::UInt(4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        AccountWithNote::from_record(row).unwrap(),
        AccountWithNote {
            id: 4,
            balance: 44,
            version: 1,
            note: None
        }
    );
}

#[tokio::test]
async fn weaker_durability_modes_still_keep_writes_across_a_clean_reopen() {
    use octopus::journal::Durability;
    for durability in [
        Durability::Interval(Duration::from_millis(5)),
        Durability::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), JournalOptions::default().durability(durability))
                .unwrap();
            for id in 0..50 {
                let a = Account {
                    id,
                    balance: 1,
                    version: 1,
                };
                j.append(
                    Account::SCHEMA,
                    &octopus::Write::Insert(a.to_record().unwrap()),
                )
                .await
                .unwrap();
            }
            j.close().await.unwrap();
        }
        let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        assert_eq!(j.pending(), 50, "{durability:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_and_created_again_during_an_outage_ends_as_the_new_row() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let plan = plan(&primary, dir.path()).await;
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = Account {
        id: 8,
        balance: 1,
        version: 0,
    };
    accounts.create(&mut a).await.unwrap();
    for balance in 2..5 {
        a.balance = balance;
        accounts.update(&mut a).await.unwrap();
    }
    assert_eq!(stored(&primary, 8).await.unwrap().version, 4);
    primary.set_down(true);
    assert_eq!(accounts.delete(8u64).await.unwrap(), Deletion::Journaled);
    let mut again = Account {
        id: 8,
        balance: 100,
        version: 0,
    };
    assert_eq!(
        accounts.create(&mut again).await.unwrap(),
        WriteOutcome::Journaled
    );
    assert_eq!(again.version, 1, "a new row starts at version 1");
    primary.set_down(false);
    drained(&plan).await;
    assert_eq!(
        stored(&primary, 8).await.unwrap(),
        again,
        "the older version 4 in the primary is not newer than the delete"
    );
    assert_eq!(plan.stats().fallback.unwrap().dead_letters, 0);
}
