//! PostgreSQL outages, for real: a fault proxy in front of the shared
//! server (hanging, then resetting and refusing connections, then slow),
//! and a server of the test's own stopped and started again in the middle
//! of a workload of overlapping writers. Writes are journaled while it is
//! gone; when it returns, the journal drains while new writes keep
//! arriving, and PostgreSQL ends with the last acknowledged write per key.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use octopus::journal::{Journal, JournalOptions, Op as JournalOp};
use octopus::{
    BreakerOptions, CachePolicy, Dao, Error, Key, MemoryStore, Model, Plan, WriteOutcome,
};
use octopus_adapters::postgres::PostgresStore;
use octopus_test_support::history::{self, Op, Outcome, Record};
use octopus_test_support::postgres::{PrivatePostgres, fresh_schema, postgres_addr, url_via};
use octopus_test_support::{check, eventually, until_drained};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "carts")]
struct Cart {
    #[octopus(key)]
    id: u64,
    items: u32,
    #[octopus(version)]
    version: u64,
}

/// Each cart's items and version, read from PostgreSQL directly.
async fn rows(url: &str) -> BTreeMap<u64, (u32, u64)> {
    let store = PostgresStore::new(url).unwrap();
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = octopus::Store::scan(&store, Cart::SCHEMA, after.as_ref(), 500)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(octopus::Key::UInt(
            Cart::from_record(last.clone()).unwrap().id,
        ));
        for r in page {
            let c = Cart::from_record(r).unwrap();
            out.insert(c.id, (c.items, c.version));
        }
    }
    out
}

/// A plan on `store` with an in-process cache and a journal in `dir`, and
/// that journal.
fn plan(store: &Arc<PostgresStore>, dir: &std::path::Path) -> (Arc<Plan>, Journal) {
    let journal = Journal::open(dir, JournalOptions::default().replay_batch(20)).unwrap();
    let plan = Arc::new(
        Plan::builder(store.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(BreakerOptions {
                window: 6,
                minimum_calls: 3,
                open_wait: Duration::from_millis(300),
                half_open_calls: 2,
                ..BreakerOptions::default()
            })
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    (plan, journal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_behind_a_fault_proxy_loses_nothing() {
    let direct = fresh_schema("outage_pg").await;
    let schema = direct.split("schema=").nth(1).unwrap().to_owned();
    let proxy = FaultProxy::start(postgres_addr()).await.unwrap();
    let through = url_via(
        &direct,
        proxy.addr(),
        &format!("deadline_ms=300&pool_size=4&schema={schema}"),
    );
    let store = Arc::new(PostgresStore::new(&through).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<u64, u32> = BTreeMap::new();

    let (plan1, _) = plan(&store, dir.path());
    let carts: Dao<Cart> = Dao::open(plan1.clone()).await.unwrap();
    let mut all: Vec<Cart> = Vec::new();
    for id in 0..20 {
        let mut c = Cart {
            id,
            items: 1,
            version: 0,
        };
        assert_eq!(carts.create(&mut c).await.unwrap(), WriteOutcome::Primary);
        expected.insert(id, 1);
        all.push(c);
    }
    assert!(proxy.connections() > 0, "the proxy is in the path");

    // A server that hangs: each call ends at its deadline, the breaker
    // opens, and the writes are journaled.
    proxy.set(Mode::Blackhole).await;
    for c in all.iter_mut().take(5) {
        c.items = 5;
        let outcome = tokio::time::timeout(Duration::from_secs(5), carts.update(c))
            .await
            .expect("a hung server holds a write past its deadline");
        assert_eq!(outcome.unwrap(), WriteOutcome::Journaled);
        expected.insert(c.id, 5);
    }
    // Then every connection reset, and new ones refused.
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    for round in 0..5u32 {
        for c in all.iter_mut() {
            c.items = 10 + round;
            assert_eq!(carts.update(c).await.unwrap(), WriteOutcome::Journaled);
            expected.insert(c.id, c.items);
        }
    }
    for id in 100..300 {
        let mut c = Cart {
            id,
            items: 7,
            version: 0,
        };
        assert_eq!(carts.create(&mut c).await.unwrap(), WriteOutcome::Journaled);
        expected.insert(id, 7);
    }
    assert_eq!(carts.read(5u64).await.unwrap().unwrap().items, 14);
    assert_eq!(carts.read(150u64).await.unwrap().unwrap().items, 7);
    let missing = carts.read(9999u64).await;
    assert!(
        matches!(missing, Err(Error::Unavailable { .. })),
        "a key nothing holds, with PostgreSQL refusing: {missing:?}"
    );
    assert_eq!(
        rows(&direct).await.get(&5).map(|r| r.0),
        Some(1),
        "PostgreSQL has not seen the outage's writes"
    );
    let pending = plan1.stats().fallback.unwrap().pending;
    assert_eq!(pending, 305, "every journaled write is pending");

    // It comes back, slowly, so the restart below happens mid-drain.
    proxy.set(Mode::Latency(Duration::from_millis(5))).await;
    eventually("draining to start", Duration::from_secs(20), async || {
        let left = plan1.stats().fallback.unwrap().pending;
        check(left < pending && left > 0, left)
    })
    .await;
    drop(carts);
    plan1.close().await.unwrap();
    drop(plan1);

    let (plan2, _) = plan(&store, dir.path());
    let carts: Dao<Cart> = Dao::open(plan2.clone()).await.unwrap();
    assert!(
        plan2.stats().fallback.unwrap().pending > 0,
        "the restart happened mid-drain"
    );
    proxy.set(Mode::Pass).await;
    for c in all.iter_mut().take(10) {
        let mut current = carts.read(c.id).await.unwrap().unwrap();
        current.items = 99;
        carts.update(&mut current).await.unwrap();
        expected.insert(c.id, 99);
    }
    until_drained(&plan2, Duration::from_secs(20)).await;
    let held: BTreeMap<u64, u32> = rows(&direct)
        .await
        .into_iter()
        .map(|(k, (items, _))| (k, items))
        .collect();
    assert_eq!(
        held, expected,
        "PostgreSQL holds the last acknowledged write of every key"
    );
    assert_eq!(plan2.stats().fallback.unwrap().dead_letters, 0);
    let mut c = carts.read(1u64).await.unwrap().unwrap();
    c.items = 1000;
    assert_eq!(carts.update(&mut c).await.unwrap(), WriteOutcome::Primary);
}

/// The history every writer records, on one clock.
#[derive(Default)]
struct Log {
    clock: AtomicU64,
    records: Mutex<Vec<Record>>,
    /// `(key, items)` of every update acknowledged as `Journaled`.
    journaled: Mutex<HashSet<(u64, i64)>>,
}

impl Log {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, client: u32, key: u64, op: Op, outcome: Outcome, invoked: u64) {
        let completed = self.now();
        self.records.lock().unwrap().push(Record {
            client: format!("writer {client}"),
            key,
            op,
            outcome,
            invoked,
            completed,
        });
    }

    fn acknowledged(&self) -> usize {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| matches!(r.op, Op::Put(_)) && r.outcome == Outcome::Ok)
            .count()
    }
}

/// Until `stop` is set: read a cart, set its items to a value unique to
/// this writer and attempt, update it, and record both in the history. A
/// conflict (another writer got there first) is a refused update; an
/// unavailable primary an update that may or may not have happened;
/// anything else fails the test.
async fn writer(carts: Dao<Cart>, me: u32, keys: u64, log: Arc<Log>, stop: Arc<AtomicBool>) {
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for id in 0..keys {
            attempt += 1;
            let invoked = log.now();
            let mut c = match carts.read(id).await {
                Ok(Some(c)) => c,
                Ok(None) => panic!("cart {id} vanished"),
                Err(Error::Unavailable { .. }) => continue,
                Err(e) => panic!("read of cart {id}: {e}"),
            };
            let seen = i64::from(c.items);
            log.push(me, id, Op::Read(Some(seen)), Outcome::Ok, invoked);
            c.items = me * 1_000_000 + attempt;
            let items = i64::from(c.items);
            // The update, built on that read, began with it.
            match carts.update(&mut c).await {
                Ok(outcome) => {
                    if outcome == WriteOutcome::Journaled {
                        log.journaled.lock().unwrap().insert((id, items));
                    }
                    log.push(me, id, Op::Put(items), Outcome::Ok, invoked);
                }
                Err(Error::Conflict { .. }) => {
                    log.push(me, id, Op::Changed(seen), Outcome::Refused, invoked)
                }
                Err(Error::Unavailable { .. }) => {
                    log.push(me, id, Op::Put(items), Outcome::Unknown, invoked)
                }
                Err(e) => panic!("update of cart {id}: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_workload_loses_no_acknowledged_write() {
    let mut server = PrivatePostgres::start().await;
    let url = format!("{}?deadline_ms=500&pool_size=4", server.url());
    let store = Arc::new(PostgresStore::new(&url).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (plan, journal) = plan(&store, dir.path());
    let carts: Dao<Cart> = Dao::open(plan.clone()).await.unwrap();
    const KEYS: u64 = 8;
    for id in 0..KEYS {
        let mut c = Cart {
            id,
            items: 0,
            version: 0,
        };
        carts.create(&mut c).await.unwrap();
    }
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Four writers on the same eight keys: their reads and updates overlap.
    let writers: Vec<_> = (1..=4)
        .map(|me| tokio::spawn(writer(carts.clone(), me, KEYS, log.clone(), stop.clone())))
        .collect();
    let acked = || log.acknowledged();
    eventually(
        "writes before the crash",
        Duration::from_secs(30),
        async || check(acked() >= 200, acked()),
    )
    .await;
    server.stop().await;
    let before = acked();
    eventually(
        "writes journaled while PostgreSQL is down",
        Duration::from_secs(30),
        async || {
            let journaled = plan.stats().fallback.unwrap().pending;
            check(journaled >= 50, (journaled, acked() - before))
        },
    )
    .await;
    server.start_again().await;
    let restarted = acked();
    eventually(
        "writes after the restart",
        Duration::from_secs(30),
        async || check(acked() >= restarted + 200, acked() - restarted),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    until_drained(&plan, Duration::from_secs(30)).await;

    // A journaled update whose read another writer's update overtook is
    // refused at replay, as it would have been by a live primary, and
    // reported; so is every update built on it. Nothing else is refused.
    let letters = journal.dead_letters().unwrap();
    assert_eq!(
        letters.len() as u64,
        plan.stats().fallback.unwrap().dead_letters,
        "every refusal is in the dead-letter file"
    );
    let journaled = log.journaled.lock().unwrap().clone();
    let mut dead: HashSet<(u64, i64)> = HashSet::new();
    for letter in &letters {
        let JournalOp::Update { record, .. } = &letter.entry.op else {
            panic!("only updates were journaled: {letter:?}")
        };
        let id = match letter.entry.key {
            Key::UInt(id) => id,
            Key::Int(id) => u64::try_from(id).unwrap(),
            Key::Text(_) => panic!("a numeric key: {letter:?}"),
        };
        let items = record["items"].as_i64().unwrap();
        assert!(
            journaled.contains(&(id, items)),
            "a dead letter that no writer was told was journaled: {letter:?}"
        );
        assert!(
            letter.error.contains("version conflict") || letter.error.contains("was refused"),
            "refused for another reason than a conflict: {letter:?}"
        );
        dead.insert((id, items));
    }

    // Every read and the final state against the history: dead-lettered
    // updates may or may not have happened (they did not).
    let mut history = log.records.lock().unwrap().clone();
    for r in &mut history {
        if let (Op::Put(items), Outcome::Ok) = (&r.op, r.outcome)
            && dead.contains(&(r.key, *items))
        {
            r.outcome = Outcome::Unknown;
        }
    }
    let held = rows(&url).await;
    let initial = (0..KEYS).map(|id| (id, Some(0))).collect();
    let last: BTreeMap<u64, Option<i64>> = held
        .iter()
        .map(|(&id, &(items, _))| (id, Some(i64::from(items))))
        .collect();
    let violations = history::check(&history, &initial, &last);
    assert!(
        violations.is_empty(),
        "{} violations over {} operations ({} dead letters), first: {:#?}",
        violations.len(),
        history.len(),
        letters.len(),
        violations.iter().take(5).collect::<Vec<_>>()
    );
    for (&id, &(items, version)) in &held {
        let c = carts.read(id).await.unwrap().unwrap();
        assert_eq!(
            (c.items, c.version),
            (items, version),
            "cart {id} read after the drain"
        );
    }
}
