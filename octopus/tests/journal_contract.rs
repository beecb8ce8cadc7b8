//! Journaled writes keep the Dao's contract: concurrent writers of one key
//! are checked atomically during an outage, and replay applies each entry
//! only if its precondition still holds on the primary, never overwriting a
//! newer acknowledged write and never bringing a deleted row back.
//!
//! The primary is a `Scripted` store (a real `MemoryStore` with scripted
//! outages); "another server" writes to that memory store directly.

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{CachePolicy, Dao, Error, Key, MemoryStore, Model, Plan, Store, WriteOutcome};
use octopus_test_support::{Scripted, check, eventually, quick_breaker};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "notes")]
struct Note {
    #[octopus(key)]
    id: u64,
    text: String,
}

fn plan_with(primary: &Arc<Scripted>, journal: Journal, open_wait: Duration) -> Arc<Plan> {
    Arc::new(
        Plan::builder(primary.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(quick_breaker(open_wait))
            .journal(journal)
            .build()
            .unwrap(),
    )
}

fn open(dir: &std::path::Path) -> Journal {
    Journal::open(dir, JournalOptions::default()).unwrap()
}

/// Waits until nothing is pending, failing with what is left.
async fn until_drained(journal: &Journal) {
    until_pending(journal, 0).await;
}

/// Waits until `pending` entries are left, failing with what is left.
async fn until_pending(journal: &Journal, pending: u64) {
    let what = format!("{pending} entries pending");
    eventually(&what, Duration::from_secs(10), async || {
        check(journal.pending() == pending, format!("{journal:?}"))
    })
    .await;
}

async fn stored(primary: &Scripted, id: u64) -> Option<Account> {
    primary
        .inner
        .get(Account::SCHEMA, &Key::UInt(id))
        .await
        .unwrap()
        .map(|r| Account::from_record(r).unwrap())
}

async fn put_directly(primary: &Scripted, account: &Account) {
    primary
        .inner
        .upsert(Account::SCHEMA, &account.to_record().unwrap())
        .await
        .unwrap();
}

fn account(id: u64, balance: i64, version: u64) -> Account {
    Account {
        id,
        balance,
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_from_one_version_acknowledge_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    for round in 0..20u64 {
        let mut a = account(round, 0, 0);
        accounts.create(&mut a).await.unwrap();
        primary.set_down(true);
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (accounts, barrier, mut mine) = (accounts.clone(), barrier.clone(), a.clone());
                tokio::spawn(async move {
                    mine.balance = i + 1;
                    barrier.wait().await;
                    accounts.update(&mut mine).await.map(|o| (o, mine.balance))
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((WriteOutcome::Journaled, balance)) => acked.push(balance),
                Ok(other) => panic!("round {round}: {other:?} with the primary down"),
                Err(Error::Conflict {
                    expected: 1,
                    actual: 2,
                    ..
                }) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(acked.len(), 1, "round {round}: acknowledged {acked:?}");
        primary.set_down(false);
        until_drained(&journal).await;
        assert_eq!(
            stored(&primary, round).await,
            Some(account(round, acked[0], 2)),
            "round {round}: the acknowledged update is the one applied"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_key_acknowledge_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    primary.set_down(true);
    for key in 0..20u64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (accounts, barrier) = (accounts.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut a = account(key, i, 0);
                    barrier.wait().await;
                    accounts.create(&mut a).await.map(|_| i)
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(i) => acked.push(i),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => panic!("key {key}: {e}"),
            }
        }
        assert_eq!(acked.len(), 1, "key {key}: acknowledged {acked:?}");
        let read = accounts.read(key).await.unwrap().unwrap();
        assert_eq!(read.balance, acked[0], "key {key}: reads see the winner");
    }
    primary.set_down(false);
    until_drained(&journal).await;
    for key in 0..20u64 {
        let read = accounts.read(key).await.unwrap().unwrap();
        assert_eq!(stored(&primary, key).await, Some(read), "key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_a_row_deleted_before_the_outage_never_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(1, 10, 0);
    accounts.create(&mut a).await.unwrap();
    let mut stale = a.clone();
    accounts.delete(1u64).await.unwrap();
    primary.set_down(true);
    stale.balance = 11;
    // Nothing known says the row is gone: the update is queued.
    assert_eq!(
        accounts.update(&mut stale).await.unwrap(),
        WriteOutcome::Journaled
    );
    primary.set_down(false);
    until_drained(&journal).await;
    assert_eq!(
        stored(&primary, 1).await,
        None,
        "the deleted row stays deleted"
    );
    let stats = plan.stats().fallback.unwrap();
    assert_eq!(stats.dead_letters, 1, "{stats:?}");
    let letters = journal.dead_letters().unwrap();
    assert!(
        letters[0].error.contains("no row with key 1"),
        "{}",
        letters[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_of_a_key_the_primary_holds_is_dead_lettered_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let mut stream = journal.subscribe_dead_letters();
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut original = account(5, 50, 0);
    accounts.create(&mut original).await.unwrap();
    primary.set_down(true);
    assert_eq!(
        accounts.create(&mut account(5, 99, 0)).await.unwrap(),
        WriteOutcome::Journaled
    );
    primary.set_down(false);
    let letter = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("a dead letter arrives")
        .unwrap();
    assert_eq!(letter.entry.key.to_string(), "5");
    assert!(letter.error.contains("already exists"), "{}", letter.error);
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 5).await, Some(original));
    let mut exported = Vec::new();
    assert_eq!(journal.export_dead_letters(&mut exported).unwrap(), 1);
    let line: serde_json::Value = serde_json::from_slice(&exported).unwrap();
    assert_eq!(line["entry"]["op"], "create");
    assert_eq!(line["entry"]["record"]["balance"], 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_chain_never_overwrites_another_servers_newer_write() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(1, 1, 0);
    accounts.create(&mut a).await.unwrap();
    primary.set_down(true);
    // This server: v1 -> v2 -> v3, journaled.
    for balance in [2, 3] {
        a.balance = balance;
        accounts.update(&mut a).await.unwrap();
    }
    assert_eq!(a.version, 3);
    // Another server's acknowledged v2 reached the primary meanwhile.
    let theirs = account(1, 200, 2);
    put_directly(&primary, &theirs).await;
    primary.set_down(false);
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 1).await, Some(theirs));
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 2, "both entries of the chain: {letters:?}");
    // In one batch the second follows the first; read in a later batch, it
    // was written after a refused entry. Either way it is refused.
    assert!(
        letters[1].error.contains("follows refused entry 1")
            || letters[1].error.contains("written after entry 1"),
        "{}",
        letters[1].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_delete_never_deletes_another_servers_newer_row() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(2, 1, 0);
    accounts.create(&mut a).await.unwrap();
    // The row is cached at version 1, so the delete knows its version.
    accounts.read(2u64).await.unwrap().unwrap();
    primary.set_down(true);
    accounts.delete(2u64).await.unwrap();
    let theirs = account(2, 222, 2);
    put_directly(&primary, &theirs).await;
    primary.set_down(false);
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 2).await, Some(theirs));
    assert_eq!(plan.stats().fallback.unwrap().dead_letters, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_write_is_checked_against_the_cached_row() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(3, 1, 0);
    accounts.create(&mut a).await.unwrap();
    a.balance = 2;
    accounts.update(&mut a).await.unwrap();
    assert_eq!(accounts.read(3u64).await.unwrap(), Some(a.clone()));
    primary.set_down(true);
    let mut stale = account(3, 9, 1);
    assert!(matches!(
        accounts.update(&mut stale).await,
        Err(Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        accounts.create(&mut account(3, 9, 0)).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(journal.pending(), 0, "nothing refused was journaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_soon_after_the_primary_answers_whatever_the_open_wait() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    // The breaker would refuse calls for two minutes after opening.
    let plan = plan_with(&primary, journal.clone(), Duration::from_secs(120));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut modes = plan.watch_mode();
    primary.set_down(true);
    for id in 0..50 {
        accounts.create(&mut account(id, 1, 0)).await.unwrap();
    }
    assert_eq!(plan.mode(), octopus::Mode::Journaling);
    assert_eq!(*modes.borrow_and_update(), octopus::Mode::Journaling);
    primary.set_down(false);
    tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .expect("drained long before the breaker's open wait");
    assert_eq!(plan.mode(), octopus::Mode::Healthy);
    assert_eq!(stored(&primary, 49).await, Some(account(49, 1, 1)));
    // The replayed batch proved the primary back: reads need not wait.
    assert_eq!(plan.breaker().state(), octopus::BreakerState::Closed);
    assert_eq!(accounts.read(7u64).await.unwrap(), Some(account(7, 1, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_one_table_never_waits_for_another_tables_model() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    {
        let journal = open(dir.path());
        let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        let notes: Dao<Note> = Dao::open(plan.clone()).await.unwrap();
        primary.set_down(true);
        for id in 0..10 {
            accounts.create(&mut account(id, 1, 0)).await.unwrap();
            let mut note = Note {
                id,
                text: format!("n{id}"),
            };
            notes.create(&mut note).await.unwrap();
        }
        plan.close().await.unwrap();
    }
    primary.set_down(false);
    // After a restart, only the notes model is opened.
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let _notes: Dao<Note> = Dao::open(plan.clone()).await.unwrap();
    // The accounts' entries wait.
    until_pending(&journal, 10).await;
    let note = primary
        .inner
        .get(Note::SCHEMA, &Key::UInt(9))
        .await
        .unwrap();
    assert!(note.is_some(), "the notes were replayed");
    // `Dao::new` makes the model known; its entries follow.
    let _accounts: Dao<Account> = Dao::new(plan.clone());
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 9).await, Some(account(9, 1, 1)));
    plan.close().await.unwrap();
    // Reopened, nothing is replayed twice.
    let journal = open(dir.path());
    assert_eq!(journal.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_the_replayer_and_frees_the_lock_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    // Down throughout: nothing replays between the rounds.
    primary.set_down(true);
    for round in 0..20 {
        let journal = open(dir.path());
        let plan = plan_with(&primary, journal, Duration::from_millis(50));
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        accounts.create(&mut account(round, 1, 0)).await.unwrap();
        plan.close().await.unwrap();
        assert!(
            accounts
                .create(&mut account(1000 + round, 1, 0))
                .await
                .is_err(),
            "a closed journal takes no more writes"
        );
    }
    let journal = open(dir.path());
    assert_eq!(journal.pending(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_requeued_once_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    accounts.create(&mut account(4, 1, 0)).await.unwrap();
    primary.set_down(true);
    accounts.create(&mut account(4, 2, 0)).await.unwrap();
    primary.set_down(false);
    until_drained(&journal).await;
    assert_eq!(journal.dead_letters().unwrap().len(), 1);
    // The operator removes the row that blocked the create, then requeues.
    primary
        .inner
        .delete(Account::SCHEMA, &Key::UInt(4))
        .await
        .unwrap();
    assert_eq!(journal.requeue_dead_letters(|_| true).await.unwrap(), 1);
    assert!(journal.dead_letters().unwrap().is_empty());
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 4).await, Some(account(4, 2, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_the_first_format_still_opens_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let line = |seq: u64, body: &str| {
        let head = format!("{{\"seq\":{seq},{body}");
        let crc = octopus::journal::crc32(&[head.as_bytes(), b"}"]);
        format!("{head},\"crc\":\"{crc:08x}\"}}\n")
    };
    let fp = format!("{:016x}", Account::SCHEMA.fingerprint());
    let text = line(
        1,
        &format!(
            r#""time":1,"table":"accounts","op":"put","key":1,"fingerprint":"{fp}","record":{{"id":1,"balance":5,"version":3}}"#
        ),
    ) + &line(
        2,
        &format!(r#""time":2,"table":"accounts","op":"delete","key":2,"fingerprint":"{fp}""#),
    ) + &line(
        3,
        &format!(
            r#""time":3,"table":"accounts","op":"put","key":3,"fingerprint":"{fp}","record":{{"id":3,"balance":7,"version":3}}"#
        ),
    );
    std::fs::write(dir.path().join("journal-00000000000000000001.jsonl"), text).unwrap();
    let primary = Scripted::new();
    put_directly(&primary, &account(1, 1, 9)).await;
    put_directly(&primary, &account(2, 1, 1)).await;
    put_directly(&primary, &account(3, 1, 2)).await;
    let journal = open(dir.path());
    assert_eq!(journal.pending(), 3);
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let _: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    until_drained(&journal).await;
    // First-format puts never replace a newer row (as they never did);
    // deletes are unconditional.
    assert_eq!(stored(&primary, 1).await, Some(account(1, 1, 9)));
    assert_eq!(stored(&primary, 2).await, None);
    assert_eq!(stored(&primary, 3).await, Some(account(3, 7, 3)));
    assert_eq!(journal.dead_letters().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_split_across_batches_stays_refused_after_its_head_is() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    // One entry per batch: every entry of the chain is replayed alone.
    let journal = Journal::open(dir.path(), JournalOptions::default().replay_batch(1)).unwrap();
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(1, 1, 0);
    accounts.create(&mut a).await.unwrap();
    primary.set_down(true);
    for balance in [2, 3, 4] {
        a.balance = balance;
        accounts.update(&mut a).await.unwrap();
    }
    // The other server's v2: exactly the version the chain's second entry
    // expects, though that entry was built on the refused first one.
    let theirs = account(1, 200, 2);
    put_directly(&primary, &theirs).await;
    primary.set_down(false);
    until_drained(&journal).await;
    assert_eq!(stored(&primary, 1).await, Some(theirs));
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(
        letters[1].error.contains("written after entry 1"),
        "{}",
        letters[1].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_outage_keeps_every_chain() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..3 {
        let journal = open(dir.path());
        let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        primary.set_down(true);
        for i in 0..200u64 {
            let id = i % 7;
            // A key neither pending nor cached is unreadable while the
            // primary is down: skip it, as an application would.
            let Ok(current) = accounts.read(id).await else {
                continue;
            };
            let mut a = match current {
                Some(a) => a,
                None => {
                    let mut a = account(id, 0, 0);
                    accounts.create(&mut a).await.unwrap();
                    a
                }
            };
            a.balance = (round * 1000 + i) as i64;
            accounts.update(&mut a).await.unwrap();
            expected.insert(id, a);
        }
        if round == 1 {
            // Part of the outage replays before the next restart.
            primary.set_down(false);
            until_drained(&journal).await;
        }
        plan.close().await.unwrap();
    }
    primary.set_down(false);
    let journal = open(dir.path());
    let plan = plan_with(&primary, journal.clone(), Duration::from_millis(50));
    let _accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    until_drained(&journal).await;
    for (id, a) in &expected {
        assert_eq!(
            stored(&primary, *id).await.as_ref(),
            Some(a),
            "key {id}: {:?}",
            journal.dead_letters().unwrap().first()
        );
    }
}
