//! Regressions from a review of the journal: a model registered partway
//! through a replay pass, a table fixed after it did not fit its model, requeue
//! next to a pending entry, a batch that failed after part of it committed,
//! a torn dead-letter line, and `drained` after `close`. Each test asserts
//! what a user sees: acknowledged writes applied exactly once, nothing left
//! pending, dead letters still listed, calls that return.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use octopus::journal::{Durability, Journal, JournalOptions};
use octopus::{Dao, Error, Key, Model, Plan, Store, WriteOutcome};
use octopus_test_support::{Scripted, Step, check, eventually, poll_until, quick_breaker};
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

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "notes")]
struct Note {
    #[octopus(key)]
    id: u64,
    text: String,
}

fn account(id: u64, balance: i64, version: u64) -> Account {
    Account {
        id,
        balance,
        version,
    }
}

fn plan_with(primary: &Arc<Scripted>, journal: &Journal) -> Arc<Plan> {
    Arc::new(
        Plan::builder(primary.clone())
            .breaker(quick_breaker(Duration::from_millis(50)))
            .journal(journal.clone())
            .build()
            .unwrap(),
    )
}

/// Waits (with a deadline) until `journal` holds `pending` entries; panics
/// with its counters otherwise.
async fn until_pending(journal: &Journal, pending: u64, what: &str) {
    let what = format!("{what}: {pending} entries pending");
    eventually(&what, Duration::from_secs(5), async || {
        check(journal.pending() == pending, journal.stats())
    })
    .await;
}

/// Waits (with a deadline) until nothing is pending; panics with the
/// journal's counters otherwise.
async fn drain(journal: &Journal, what: &str) {
    until_pending(journal, 0, what).await;
}

/// Whether nothing is pending within `within`.
async fn drained_within(journal: &Journal, within: Duration) -> bool {
    poll_until(within, async || check(journal.pending() == 0, ()))
        .await
        .is_ok()
}

async fn stored(primary: &Scripted, id: u64) -> Option<Account> {
    primary
        .inner
        .get(Account::SCHEMA, &Key::UInt(id))
        .await
        .unwrap()
        .map(|r| Account::from_record(r).unwrap())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A model registered while the replayer is partway through its first pass
/// (sorting a batch by table, or between two batches) must not split the
/// table: entries read before the registration wait, and the ones read
/// after it must not mark the table done past them. Every entry ends
/// applied, nothing stays pending, and a reopened journal has nothing left.
/// The registration lands at a different point of the first pass on every
/// attempt, until the time budget is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_registered_mid_pass_leaves_no_entry_of_its_table_behind() {
    const ROWS: u64 = 3000;
    const BUDGET: Duration = Duration::from_secs(5);
    let options = || JournalOptions::default().replay_batch(500);
    let seed = tempfile::tempdir().unwrap();
    {
        let primary = Scripted::new();
        let journal = Journal::open(seed.path(), options().durability(Durability::None)).unwrap();
        let plan = plan_with(&primary, &journal);
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        primary.set_down(true);
        for id in 0..ROWS {
            let outcome = accounts.create(&mut account(id, 1, 0)).await.unwrap();
            assert_eq!(outcome, WriteOutcome::Journaled);
        }
        plan.close().await.unwrap();
    }
    // How long a first pass takes with no model known: it ends when the
    // replayer reports the table waiting.
    let pass = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(seed.path(), dir.path());
        let journal = Journal::open(dir.path(), options()).unwrap();
        let started = Instant::now();
        let plan = plan_with(&Scripted::new(), &journal);
        eventually("a first pass", Duration::from_secs(5), async || {
            check(journal.stats().replay_error.is_some(), journal.stats())
        })
        .await;
        let pass = started.elapsed();
        plan.close().await.unwrap();
        pass
    };
    let started = Instant::now();
    let mut attempt = 0u64;
    while started.elapsed() < BUDGET {
        attempt += 1;
        let primary = Scripted::new();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(seed.path(), dir.path());
        let journal = Journal::open(dir.path(), options()).unwrap();
        assert_eq!(journal.pending(), ROWS);
        // The replayer starts with no model known: its entries wait until
        // the model is registered, spread over the first pass.
        let plan = plan_with(&primary, &journal);
        let delay = pass.mul_f64((attempt as f64 * 0.618_034).fract());
        let spin = Instant::now();
        while spin.elapsed() < delay {
            std::hint::spin_loop();
        }
        let _accounts: Dao<Account> = Dao::new(plan.clone());
        let drained = drained_within(&journal, Duration::from_secs(3)).await;
        let stats = journal.stats();
        plan.close().await.unwrap();
        let applied = primary
            .inner
            .scan(Account::SCHEMA, None, 10_000)
            .await
            .unwrap()
            .len();
        let reopened = Journal::open(dir.path(), options()).unwrap();
        assert!(
            drained && applied as u64 == ROWS && reopened.pending() == 0,
            "attempt {attempt} (registered {delay:?} into a {pass:?} pass): drained {drained}, \
             {stats:?}; {applied} of {ROWS} rows in the primary; {} pending after reopen",
            reopened.pending()
        );
    }
}

/// An entry that waited because its table did not fit the model (the
/// primary's `ensure_schema` refused it) is applied once the table is
/// fixed; a later entry of the same table, applied first, never marks the
/// table done past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_waiting_on_a_table_that_did_not_fit_is_applied_once_the_table_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    // The replayer's first `ensure_schema` finds the table unfit.
    primary.refuse_ensure_schema(1);
    primary.set_down(true);
    let first = accounts.create(&mut account(1, 1, 0)).await.unwrap();
    assert_eq!(first, WriteOutcome::Journaled);
    eventually(
        "the replayer to try the table",
        Duration::from_secs(5),
        async || {
            let tried = primary.ensure_failures.load(Ordering::SeqCst) == 0;
            check(
                tried && journal.stats().replay_error.is_some(),
                journal.stats(),
            )
        },
    )
    .await;
    // The table is fixed (the next `ensure_schema` passes); a second entry
    // of the table arrives after the first one had to wait.
    let second = accounts.create(&mut account(2, 1, 0)).await.unwrap();
    assert_eq!(second, WriteOutcome::Journaled);
    primary.set_down(false);
    if !drained_within(&journal, Duration::from_secs(5)).await {
        panic!(
            "the waiting entry was never applied: {:?}; primary holds 1: {:?}, 2: {:?}",
            journal.stats(),
            stored(&primary, 1).await,
            stored(&primary, 2).await
        );
    }
    assert_eq!(stored(&primary, 1).await, Some(account(1, 1, 1)));
    assert_eq!(stored(&primary, 2).await, Some(account(2, 1, 1)));
    plan.close().await.unwrap();
    let reopened = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(reopened.pending(), 0);
    assert!(reopened.dead_letters().unwrap().is_empty());
}

/// Requeue never puts a dead letter behind a newer pending entry of its key
/// (where it would borrow that entry's precondition): such a letter is left
/// listed, `requeue_dead_letters` counts it out, and the acknowledged
/// pending write wins. Once the key has drained, requeueing it lets the
/// primary judge it on its own precondition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_leaves_a_letter_whose_key_has_a_pending_entry() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let mut a = account(1, 1, 0);
    accounts.create(&mut a).await.unwrap(); // v1 on the primary
    primary.set_down(true);
    a.balance = 2;
    let ours = accounts.update(&mut a).await.unwrap(); // expects v1, writes v2
    assert_eq!(ours, WriteOutcome::Journaled);
    // Another server writes v3 meanwhile: our update is refused at replay.
    let theirs = account(1, 300, 3);
    primary
        .inner
        .upsert(Account::SCHEMA, &theirs.to_record().unwrap())
        .await
        .unwrap();
    primary.set_down(false);
    drain(&journal, "first outage").await;
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let refused_seq = letters[0].entry.seq;

    // A second outage: an update from v3 is acknowledged and pending.
    primary.set_down(true);
    let mut fresh = theirs.clone();
    fresh.balance = 400;
    let pending_write = accounts.update(&mut fresh).await.unwrap(); // expects v3, writes v4
    assert_eq!(pending_write, WriteOutcome::Journaled);
    let requeued = journal.requeue_dead_letters(|_| true).await.unwrap();
    primary.set_down(false);
    drain(&journal, "second outage").await;
    assert_eq!(
        stored(&primary, 1).await,
        Some(account(1, 400, 4)),
        "the acknowledged pending write must win over the requeued letter"
    );
    assert_eq!(
        requeued, 0,
        "a letter whose key had a pending entry was requeued"
    );
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.seq, refused_seq);

    // The key has drained: now it is requeued, and refused on its own
    // precondition (v1) against the stored v4.
    assert_eq!(journal.requeue_dead_letters(|_| true).await.unwrap(), 1);
    drain(&journal, "requeue").await;
    assert_eq!(stored(&primary, 1).await, Some(account(1, 400, 4)));
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_ne!(
        letters[0].entry.seq, refused_seq,
        "the requeued entry, refused again"
    );
    plan.close().await.unwrap();
}

/// A batch that fails `Unavailable` after one of its tables committed is
/// retried without applying that table's changes again: a row another
/// server deleted after our create committed stays deleted, and the rest
/// of the batch is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_a_partial_commit_does_not_apply_committed_changes_again() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    let notes: Dao<Note> = Dao::open(plan.clone()).await.unwrap();
    primary.set_down(true);
    let a = accounts.create(&mut account(1, 1, 0)).await.unwrap();
    let n = notes
        .create(&mut Note {
            id: 1,
            text: "n".into(),
        })
        .await
        .unwrap();
    assert_eq!((a, n), (WriteOutcome::Journaled, WriteOutcome::Journaled));
    // One batch, two tables. The account's create commits (its read
    // passes, its insert is held until the other server has deleted the
    // row); then the primary goes away before the note's table.
    let held = Arc::new(Notify::new());
    primary
        .then(Step::Pass)
        .then(Step::Gate(held.clone()))
        .then(Step::Down);
    primary.set_down(false);
    eventually("the account's create", Duration::from_secs(5), async || {
        check(stored(&primary, 1).await.is_some(), journal.stats())
    })
    .await;
    // Another server deletes the row our create put there.
    assert!(
        primary
            .inner
            .delete(Account::SCHEMA, &Key::UInt(1))
            .await
            .unwrap()
    );
    held.notify_one();
    drain(&journal, "after the retry").await;
    assert_eq!(
        stored(&primary, 1).await,
        None,
        "the create was applied twice: the other server's delete was undone"
    );
    let note = primary
        .inner
        .get(Note::SCHEMA, &Key::UInt(1))
        .await
        .unwrap()
        .map(|r| Note::from_record(r).unwrap());
    assert_eq!(
        note,
        Some(Note {
            id: 1,
            text: "n".into()
        })
    );
    assert!(journal.dead_letters().unwrap().is_empty());
    assert_eq!(journal.stats().replayed, 2);
    plan.close().await.unwrap();
}

/// A dead-letter line torn by a crash at the end of the file does not
/// poison the letters written after it: they are listed and exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_dead_letter_line_does_not_hide_later_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dead-letters.jsonl"),
        b"{\"entry\":{\"seq\":9",
    )
    .unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(journal.dead_letters().unwrap().is_empty());
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    accounts.create(&mut account(4, 1, 0)).await.unwrap();
    // A create of a key the primary holds, journaled during an outage, is
    // refused at replay: a dead letter appended after the torn line.
    primary.set_down(true);
    let outcome = accounts.create(&mut account(4, 2, 0)).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Journaled);
    primary.set_down(false);
    drain(&journal, "the refused create").await;
    let letters = journal
        .dead_letters()
        .expect("dead letters after a torn line must stay readable");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.table, "accounts");
    // Keys read back from JSON are plain integers.
    assert!(
        matches!(letters[0].entry.key, Key::Int(4) | Key::UInt(4)),
        "{letters:?}"
    );
    let mut exported = Vec::new();
    assert_eq!(journal.export_dead_letters(&mut exported).unwrap(), 1);
    assert_eq!(stored(&primary, 4).await, Some(account(4, 1, 1)));
    plan.close().await.unwrap();
    let reopened = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(reopened.dead_letters().unwrap().len(), 1);
}

/// `drained()` returns once the journal is closed, even with entries still
/// pending (they stay in the journal for the next open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_returns_after_close_with_entries_pending() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    primary.set_down(true);
    let outcome = accounts.create(&mut account(1, 1, 0)).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Journaled);
    plan.close().await.unwrap();
    let returned = tokio::time::timeout(Duration::from_secs(2), plan.drained()).await;
    assert!(
        returned.is_ok(),
        "drained() on a closed journal never returns"
    );
    let returned = tokio::time::timeout(Duration::from_secs(2), journal.drained()).await;
    assert!(
        returned.is_ok(),
        "Journal::drained() after close never returns"
    );
    let reopened = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(reopened.pending(), 1, "closing is not draining");
}

/// An entry of a table whose `ensure_schema` failed waits; an entry of a
/// table with no model, later in the batch, must not let the checkpoint
/// pass it (it would be skipped for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_waiting_on_an_unfit_table_is_never_passed_by_an_unknown_tables_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        j.append(
            Account::SCHEMA,
            &octopus::Write::Insert(account(1, 1, 1).to_record().unwrap()),
        )
        .await
        .unwrap();
        j.append(
            Note::SCHEMA,
            &octopus::Write::Insert(
                Note {
                    id: 1,
                    text: "n".into(),
                }
                .to_record()
                .unwrap(),
            ),
        )
        .await
        .unwrap();
        j.close().await.unwrap();
    }
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 2);
    journal.register(Account::SCHEMA);
    // The replayer's first ensure_schema of `accounts` finds it unfit.
    primary.refuse_ensure_schema(1);
    let plan = plan_with(&primary, &journal);
    eventually(
        "the table to be refused",
        Duration::from_secs(3),
        async || check(journal.stats().replay_error.is_some(), journal.stats()),
    )
    .await;
    // The table is fixed; notes gets registered (a start-over).
    journal.register(Note::SCHEMA);
    let drained = drained_within(&journal, Duration::from_secs(5)).await;
    let acct = stored(&primary, 1).await;
    plan.close().await.unwrap();
    assert!(
        acct.is_some(),
        "entry 1 (account 1) never applied, never dead-lettered"
    );
    assert!(drained, "{:?}", journal.stats());
}

/// While a table waits, the `+seq` lines of entries committed around it do
/// not pile up in the checkpoint: a table mark covers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_stays_small_while_a_table_waits() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        j.append(
            Note::SCHEMA,
            &octopus::Write::Insert(
                Note {
                    id: 1,
                    text: "n".into(),
                }
                .to_record()
                .unwrap(),
            ),
        )
        .await
        .unwrap();
        j.close().await.unwrap();
    }
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
    for cycle in 0..3u64 {
        primary.set_down(true);
        for i in 0..50u64 {
            let id = cycle * 100 + i;
            let mut a = account(id, 1, 0);
            assert_eq!(
                accounts.create(&mut a).await.unwrap(),
                WriteOutcome::Journaled
            );
            assert_eq!(
                accounts.update(&mut a).await.unwrap(),
                WriteOutcome::Journaled
            );
        }
        primary.set_down(false);
        until_pending(&journal, 1, &format!("cycle {cycle}")).await;
    }
    let cp = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    plan.close().await.unwrap();
    // The file holds a header line and two copies (slots) of the text.
    let lines = cp.lines().filter(|l| !l.is_empty()).count();
    assert!(
        lines < 2 * 20,
        "checkpoint keeps {lines} lines in two slots"
    );
}

/// A replayer stopped after part of a batch was committed and counted
/// leaves no pending-index slot behind for the next replayer of the process:
/// later reads and writes of the key see the primary, not a stale row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayer_started_again_in_the_process_leaves_no_stale_pending_row() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Scripted::new();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan1 = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::open(plan1.clone()).await.unwrap();
    let notes: Dao<Note> = Dao::open(plan1.clone()).await.unwrap();
    primary.set_down(true);
    let mut a = account(1, 1, 0);
    assert_eq!(
        accounts.create(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );
    a.balance = 2;
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );
    assert_eq!(
        notes
            .create(&mut Note {
                id: 1,
                text: "n".into()
            })
            .await
            .unwrap(),
        WriteOutcome::Journaled
    );
    let held = Arc::new(Notify::new());
    primary
        .then(Step::Pass) // round 1: get
        .then(Step::Pass) // round 1: insert
        .then(Step::Pass) // round 2: get
        .then(Step::Gate(held.clone())); // round 2: update, held
    primary.set_down(false);
    eventually(
        "round 1 to be applied",
        Duration::from_secs(5),
        async || {
            let row = stored(&primary, 1).await;
            check(row.as_ref().is_some_and(|s| s.version == 2), row)
        },
    )
    .await;
    primary.set_down(true);
    held.notify_one();
    until_pending(&journal, 1, "round 2 held").await;
    // The application rebuilds its plan over the same journal.
    drop(accounts);
    drop(notes);
    drop(plan1);
    let plan2 = plan_with(&primary, &journal);
    let accounts: Dao<Account> = Dao::new(plan2.clone());
    let notes: Dao<Note> = Dao::new(plan2.clone());
    primary.set_down(false);
    drain(&journal, "the second replayer").await;
    // A direct write while healthy: v2 -> v3.
    assert_eq!(
        accounts.update(&mut a).await.unwrap(),
        WriteOutcome::Primary
    );
    assert_eq!(stored(&primary, 1).await.unwrap().version, 3);
    // Another key is journaled in a later outage.
    primary.set_down(true);
    assert_eq!(
        notes
            .create(&mut Note {
                id: 2,
                text: "m".into()
            })
            .await
            .unwrap(),
        WriteOutcome::Journaled
    );
    let read = accounts.read(1u64).await;
    a.balance = 3;
    let upd = accounts.update(&mut a).await;
    plan2.close().await.unwrap();
    assert!(
        !matches!(read, Ok(Some(ref r)) if r.version == 2),
        "stale pending row served: {read:?}"
    );
    assert!(
        !matches!(upd, Err(Error::Conflict { .. })),
        "false conflict: {upd:?}"
    );
}
