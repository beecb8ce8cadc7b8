//! Servers with in-process caches over one MySQL and one memcached: three
//! plans (each its own in-process cache, memcached client and MySQL pool,
//! as three servers have), three tasks each, reading and updating four hot
//! keys with no lock around an operation. Every operation is recorded and
//! the history checked per key: with a fleet lease no read returns a row
//! older than a write acknowledged (by any server) before the read began;
//! without one, the in-process caches serve rows other servers overwrote,
//! and the checker sees it.
#![cfg(all(feature = "mysql", feature = "memcache"))]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus::{CachePolicy, Dao, Error, MemoryOptions, MemoryStore, Model, Plan, Store};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::Rng;
use octopus_test_support::history::{self, Op, Outcome, Record};
use octopus_test_support::memcache::{fresh_namespace, memcache_url};
use octopus_test_support::mysql::fresh_database;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "fleet_items")]
struct Item {
    #[octopus(key)]
    id: u64,
    value: i64,
    #[octopus(version)]
    version: u64,
}

const SERVERS: u64 = 3;
const TASKS: u64 = 3;
const KEYS: u64 = 4;
const OPS: u64 = 80;

/// The history, on one logical clock.
#[derive(Default)]
struct Recorder {
    clock: AtomicU64,
    records: Mutex<Vec<Record>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, client: String, key: u64, op: Op, outcome: Outcome, invoked: u64) {
        let completed = self.now();
        self.records.lock().unwrap().push(Record {
            client,
            key,
            op,
            outcome,
            invoked,
            completed,
        });
    }
}

/// One server's plan: MySQL, then its in-process cache, then memcached.
async fn server(mysql: &str, namespace: &str, lease: Option<Duration>) -> Dao<Item> {
    let memcached = MemcacheOptions::from_url(&memcache_url())
        .unwrap()
        .namespace(namespace)
        .unwrap();
    let mut plan = Plan::builder(Arc::new(MysqlStore::new(mysql).unwrap()))
        .cache(
            Arc::new(MemoryStore::with_options(
                MemoryOptions::new().capacity(100),
            )),
            CachePolicy::Invalidate,
        )
        .cache(
            Arc::new(MemcacheStore::with_options(memcached).await.unwrap()),
            CachePolicy::Invalidate,
        );
    if let Some(lease) = lease {
        plan = plan.fleet_lease(lease);
    }
    Dao::open(Arc::new(plan.build().unwrap())).await.unwrap()
}

/// One task: reads, and updates built on its reads, of the hot keys.
async fn task(dao: Dao<Item>, client: String, seed: u64, recorder: Arc<Recorder>) {
    let mut rng = Rng::new(seed);
    for n in 0..OPS {
        let key = rng.below(KEYS);
        let invoked = recorder.now();
        let read = dao.read(key).await.unwrap();
        let value = read.as_ref().map(|item| item.value);
        recorder.push(client.clone(), key, Op::Read(value), Outcome::Ok, invoked);
        let Some(mut item) = read.filter(|_| rng.chance(50)) else {
            continue;
        };
        let built_on = item.value;
        item.value = ((seed as i64) << 20) | n as i64;
        let invoked = recorder.now();
        match dao.update(&mut item).await {
            Ok(_) => recorder.push(
                client.clone(),
                key,
                Op::Put(item.value),
                Outcome::Ok,
                invoked,
            ),
            Err(Error::Conflict { .. }) => recorder.push(
                client.clone(),
                key,
                Op::Changed(built_on),
                Outcome::Refused,
                invoked,
            ),
            Err(e) => panic!("{client}: update of key {key}: {e}"),
        }
    }
}

/// Runs the workload with `lease` and returns the history's violations.
async fn run(name: &str, lease: Option<Duration>) -> Vec<history::Violation> {
    let mysql = fresh_database(name).await;
    let namespace = fresh_namespace(name);
    let seed_store = MysqlStore::new(&mysql).unwrap();
    seed_store.ensure_schema(Item::SCHEMA).await.unwrap();
    let mut initial = BTreeMap::new();
    for id in 0..KEYS {
        let row = Item {
            id,
            value: 0,
            version: 1,
        };
        seed_store
            .insert(Item::SCHEMA, &row.to_record().unwrap())
            .await
            .unwrap();
        initial.insert(id, Some(0));
    }
    let recorder = Arc::new(Recorder::default());
    let mut tasks = Vec::new();
    for s in 0..SERVERS {
        let dao = server(&mysql, &namespace, lease).await;
        for t in 0..TASKS {
            tasks.push(tokio::spawn(task(
                dao.clone(),
                format!("server {s} task {t}"),
                s * TASKS + t + 1,
                recorder.clone(),
            )));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = BTreeMap::new();
    for id in 0..KEYS {
        let row = seed_store.get(Item::SCHEMA, &id.into()).await.unwrap();
        let value = row.map(|r| Item::from_record(r).unwrap().value);
        last.insert(id, value);
    }
    let records = recorder.records.lock().unwrap().clone();
    history::check(&records, &initial, &last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fleet_lease_no_server_reads_a_row_another_overwrote() {
    let violations = run("fleet_lease", Some(Duration::from_millis(20))).await;
    assert!(
        violations.is_empty(),
        "{} violations, the first: {:#?}",
        violations.len(),
        violations.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_in_process_caches_serve_rows_other_servers_overwrote() {
    let violations = run("fleet_no_lease", None).await;
    assert!(
        violations.iter().any(|v| v.rule == "stale"),
        "the in-process caches never served an overwritten row: the workload no longer overlaps \
         servers on a key ({} violations)",
        violations.len()
    );
}
