//! A journal on JetStream shared by several servers, against a nats-server
//! of the test's own: per-key checks are atomic across servers (of two
//! servers updating one key from one version exactly one is acknowledged),
//! every server reads every server's pending writes, and any server drains
//! the whole stream into MySQL, a dead server's entries included.
#![cfg(feature = "nats")]

use std::collections::BTreeMap;
use std::sync::Arc;

use octopus::{Error, Fallback, Model, Write, WriteOutcome};
use octopus_adapters::nats::JetStreamJournal;
use octopus_test_support::nats::OwnNats;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

fn row(id: u64, balance: i64, version: u64) -> octopus::Record {
    Account {
        id,
        balance,
        version,
    }
    .to_record()
    .unwrap()
}

fn outage() -> Error {
    Error::unavailable("mysql", "refused")
}

async fn server(nats: &OwnNats, stream: &str) -> Arc<JetStreamJournal> {
    let url = format!("{}?stream={stream}", nats.url());
    let journal = JetStreamJournal::connect(&url).await.unwrap();
    journal.register(Account::SCHEMA);
    Arc::new(journal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_updating_one_key_from_one_version_acknowledge_exactly_one() {
    let nats = OwnNats::start().await;
    let (a, b) = (server(&nats, "race").await, server(&nats, "race").await);
    let schema = Account::SCHEMA;
    const KEYS: u64 = 64;
    // Every key at version 3 in both servers' caches; both update every key
    // from version 3 at once.
    let mut races = Vec::new();
    for id in 0..KEYS {
        let (a, b) = (a.clone(), b.clone());
        races.push(tokio::spawn(async move {
            let cached = row(id, 0, 3);
            let from_a = Write::Update {
                record: row(id, 100, 4),
                expected_version: Some(3),
            };
            let from_b = Write::Update {
                record: row(id, 200, 4),
                expected_version: Some(3),
            };
            let (ra, rb) = tokio::join!(
                a.write(schema, &from_a, Some(&cached), outage()),
                b.write(schema, &from_b, Some(&cached), outage()),
            );
            (id, ra, rb)
        }));
    }
    let mut winners = BTreeMap::new();
    for race in races {
        let (id, ra, rb) = race.await.unwrap();
        let (won, lost, balance) = match (&ra, &rb) {
            (Ok(_), Err(e)) => (ra.as_ref().unwrap(), e, 100),
            (Err(e), Ok(_)) => (rb.as_ref().unwrap(), e, 200),
            other => panic!("key {id}: both or neither acknowledged: {other:?}"),
        };
        assert_eq!(*won, WriteOutcome::Journaled);
        assert!(
            matches!(
                lost,
                Error::Conflict {
                    expected: 3,
                    actual: 4,
                    ..
                }
            ),
            "key {id}: the loser is told the version moved on: {lost:?}"
        );
        winners.insert(id, balance);
    }
    // Both servers read the winner's row, whichever server wrote it.
    for (id, balance) in winners {
        for (name, server) in [("a", &a), ("b", &b)] {
            let pending = Fallback::pending(&**server, schema, &id.into())
                .await
                .unwrap();
            assert_eq!(
                pending,
                Some(Some(row(id, balance, 4))),
                "server {name}, key {id}"
            );
        }
    }
    assert_eq!(a.pending_now().await.unwrap(), KEYS, "one message per key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_deletes_are_checked_across_servers() {
    let nats = OwnNats::start().await;
    let (a, b) = (
        server(&nats, "creates").await,
        server(&nats, "creates").await,
    );
    let schema = Account::SCHEMA;
    let create = |balance| Write::Insert(row(7, balance, 1));
    let (one, two) = (create(1), create(2));
    let (ra, rb) = tokio::join!(
        a.write(schema, &one, None, outage()),
        b.write(schema, &two, None, outage()),
    );
    let outcomes = [&ra, &rb];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(Error::AlreadyExists { .. }))),
        "{outcomes:?}"
    );
    // A delete on one server, then an update of the deleted row on the other.
    let delete = Write::Delete {
        key: 7u64.into(),
        expected_version: Some(1),
    };
    assert_eq!(
        a.write(schema, &delete, None, outage()).await.unwrap(),
        WriteOutcome::Journaled
    );
    let update = Write::Update {
        record: row(7, 5, 2),
        expected_version: Some(1),
    };
    let err = b.write(schema, &update, None, outage()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(
        Fallback::pending(&*b, schema, &7u64.into()).await.unwrap(),
        Some(None)
    );
}

#[cfg(feature = "mysql")]
mod drain {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use fault_proxy::{FaultProxy, Mode};
    use mysql_async::prelude::Queryable;
    use octopus::{
        CachePolicy, Dao, Fallback, MemoryStore, Model, Plan, Store, Write, WriteOutcome,
    };
    use octopus_adapters::mysql::MysqlStore;
    use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
    use octopus_test_support::nats::OwnNats;
    use octopus_test_support::{check, eventually, quick_breaker};

    use super::{Account, JetStreamJournal, server};

    async fn rows(url: &str) -> BTreeMap<u64, (i64, u64)> {
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        let rows: Vec<(u64, i64, u64)> = conn
            .query("SELECT id, balance, version FROM accounts")
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        rows.into_iter().map(|(id, b, v)| (id, (b, v))).collect()
    }

    async fn plan(
        store: &Arc<MysqlStore>, journal: Arc<octopus_adapters::nats::JetStreamJournal>,
    ) -> Dao<Account> {
        let plan = Plan::builder(store.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(quick_breaker(Duration::from_millis(200)))
            .fallback(journal)
            .build()
            .unwrap();
        Dao::open(Arc::new(plan)).await.unwrap()
    }

    /// Two servers write through a MySQL outage, hot keys shared; one of
    /// them dies before MySQL returns; the other drains every entry, the
    /// dead server's included, and MySQL ends with each key's last
    /// acknowledged write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn any_server_drains_the_fleet_a_dead_servers_entries_included() {
        let nats = OwnNats::start().await;
        let direct = fresh_database("nats_drain").await;
        let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
        let store =
            Arc::new(MysqlStore::new(&url_via(&direct, proxy.addr(), "deadline_ms=300")).unwrap());
        let (ja, jb) = (server(&nats, "fleet").await, server(&nats, "fleet").await);
        let (a, b) = (
            plan(&store, ja.clone()).await,
            plan(&store, jb.clone()).await,
        );
        let mut expected = BTreeMap::new();
        for id in 0..10 {
            let mut acc = Account {
                id,
                balance: 0,
                version: 0,
            };
            assert_eq!(a.create(&mut acc).await.unwrap(), WriteOutcome::Primary);
            expected.insert(id, (acc.balance, acc.version));
        }

        // Both servers have every row in their own cache.
        for id in 0..10 {
            assert!(a.read(id).await.unwrap().is_some() && b.read(id).await.unwrap().is_some());
        }

        proxy.set(Mode::Reset).await;
        proxy.set(Mode::Refuse).await;
        // Each key updated by both servers in turn, each update built on
        // what the other acknowledged (read through the stream once a
        // server has seen that the stream holds entries).
        for round in 1..=3 {
            if round == 2 {
                eventually(
                    "both servers to see the stream's entries",
                    Duration::from_secs(5),
                    async || {
                        check(
                            ja.pending() > 0 && jb.pending() > 0,
                            (ja.pending(), jb.pending()),
                        )
                    },
                )
                .await;
            }
            for id in 0..10 {
                let dao = if (id + round) % 2 == 0 { &a } else { &b };
                let mut acc = dao.read(id).await.unwrap().expect("every key is readable");
                acc.balance += 10;
                let outcome = dao.update(&mut acc).await.unwrap();
                if round > 1 {
                    assert_eq!(outcome, WriteOutcome::Journaled, "key {id}, round {round}");
                }
                expected.insert(id, (acc.balance, acc.version));
            }
        }
        // Server a dies with its entries still in the stream.
        a.plan().fallback().close().await.unwrap();
        drop(a);
        assert!(jb.pending_now().await.unwrap() > 0);

        proxy.set(Mode::Pass).await;
        eventually(
            "server b to drain the stream",
            Duration::from_secs(20),
            async || {
                let left = jb.pending_now().await.unwrap();
                check(left == 0, (left, Fallback::stats(&*jb)))
            },
        )
        .await;
        assert_eq!(
            rows(&direct).await,
            expected,
            "MySQL holds each key's last write"
        );
        let stats = Fallback::stats(&*jb).unwrap();
        assert_eq!(stats.dead_letters, 0, "{stats:?}");
        let mut acc = b.read(3).await.unwrap().unwrap();
        acc.balance += 1;
        assert_eq!(b.update(&mut acc).await.unwrap(), WriteOutcome::Primary);
    }
    #[derive(Debug, Clone, PartialEq, Model)]
    #[octopus(table = "ledger")]
    struct Ledger {
        #[octopus(key)]
        id: u64,
        amount: i64,
    }

    /// The lease holder has no model of one table: the other tables drain,
    /// that table's entries wait, and a server that has the model takes
    /// the lease over and drains them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_the_holder_cannot_read_waits_for_a_server_that_can() {
        let nats = OwnNats::start().await;
        let direct = fresh_database("nats_tables").await;
        let store = Arc::new(MysqlStore::new(&direct).unwrap());
        store.ensure_schema(Ledger::SCHEMA).await.unwrap();
        // Entries of both tables, written while no server drains.
        let writer = server(&nats, "tables").await;
        writer.register(Ledger::SCHEMA);
        for id in 0..5 {
            let outage = octopus::Error::unavailable("mysql", "down");
            let ledger = Ledger {
                id,
                amount: 10 * id as i64,
            }
            .to_record()
            .unwrap();
            writer
                .write(Ledger::SCHEMA, &Write::Insert(ledger), None, outage)
                .await
                .unwrap();
            let outage = octopus::Error::unavailable("mysql", "down");
            let account = super::row(id, 1, 1);
            writer
                .write(Account::SCHEMA, &Write::Insert(account), None, outage)
                .await
                .unwrap();
        }
        // A server that only knows accounts drains them; ledger waits.
        let accounts_only = server(&nats, "tables").await;
        let _a = plan(&store, accounts_only.clone()).await;
        eventually(
            "the accounts to drain",
            Duration::from_secs(10),
            async || {
                let held = accounts_only.pending_now().await.unwrap();
                check(held == 5, (held, Fallback::stats(&*accounts_only)))
            },
        )
        .await;
        let stats = Fallback::stats(&*accounts_only).unwrap();
        assert_eq!(stats.replayed, 5, "{stats:?}");
        assert!(stats.replay_error.unwrap_or_default().contains("ledger"));
        // A server with both models takes the lease over and drains ledger.
        let both = server(&nats, "tables").await;
        both.register(Ledger::SCHEMA);
        let plan_b = Plan::builder(store.clone())
            .fallback(both.clone())
            .build()
            .unwrap();
        let _ledger: Dao<Ledger> = Dao::open(Arc::new(plan_b)).await.unwrap();
        eventually("ledger to drain", Duration::from_secs(10), async || {
            let left = both.pending_now().await.unwrap();
            check(left == 0, (left, Fallback::stats(&*both)))
        })
        .await;
        let mut conn = mysql_async::Conn::from_url(&direct).await.unwrap();
        let sum: Option<i64> = conn
            .query_first("SELECT SUM(amount) FROM ledger")
            .await
            .unwrap();
        assert_eq!(sum, Some(100));
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM accounts")
            .await
            .unwrap();
        assert_eq!(n, Some(5));
        conn.disconnect().await.unwrap();
    }
    /// A create of a key MySQL holds is refused at replay, and so is the
    /// update written after it; both are dead letters in their stream, with
    /// the primary's error, and the rest drains.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_entries_are_dead_letters_in_their_stream() {
        let nats = OwnNats::start().await;
        let direct = fresh_database("nats_dead").await;
        let store = Arc::new(MysqlStore::new(&direct).unwrap());
        store.ensure_schema(Account::SCHEMA).await.unwrap();
        store
            .insert(Account::SCHEMA, &super::row(9, 500, 1))
            .await
            .unwrap();
        let writer = server(&nats, "dead").await;
        let down = || octopus::Error::unavailable("mysql", "down");
        // The cache does not know row 9: the create is journaled.
        writer
            .write(
                Account::SCHEMA,
                &Write::Insert(super::row(9, 1, 1)),
                None,
                down(),
            )
            .await
            .unwrap();
        let update = Write::Update {
            record: super::row(9, 2, 2),
            expected_version: Some(1),
        };
        writer
            .write(Account::SCHEMA, &update, None, down())
            .await
            .unwrap();
        writer
            .write(
                Account::SCHEMA,
                &Write::Insert(super::row(10, 3, 1)),
                None,
                down(),
            )
            .await
            .unwrap();

        let drainer = server(&nats, "dead").await;
        let _dao = plan(&store, drainer.clone()).await;
        eventually("the stream to drain", Duration::from_secs(10), async || {
            let left = drainer.pending_now().await.unwrap();
            check(left == 0, (left, Fallback::stats(&*drainer)))
        })
        .await;
        let letters = writer.dead_letters().await.unwrap();
        let seen: Vec<(String, &str)> = letters
            .iter()
            .map(|l| {
                (
                    l.entry.key.to_string(),
                    if l.error.contains("follows") || l.error.contains("after entry") {
                        "chained"
                    } else {
                        "refused"
                    },
                )
            })
            .collect();
        assert_eq!(
            seen,
            [("9".to_owned(), "refused"), ("9".to_owned(), "chained")],
            "{letters:?}"
        );
        assert!(
            letters[0].error.contains("exists"),
            "the primary's error: {}",
            letters[0].error
        );
        let row9 = store.get(Account::SCHEMA, &9u64.into()).await.unwrap();
        assert_eq!(row9, Some(super::row(9, 500, 1)), "MySQL's row stands");
        assert!(
            store
                .get(Account::SCHEMA, &10u64.into())
                .await
                .unwrap()
                .is_some()
        );
    }
    /// While the fleet's stream holds entries, only the keys it holds
    /// entries of queue behind them: a server writes every other key to
    /// MySQL. (The lease is held by a stalled server, so nothing drains
    /// until the test lets it go.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_keys_with_pending_entries_queue_behind_them() {
        let nats = OwnNats::start().await;
        let direct = fresh_database("nats_queue").await;
        let store = Arc::new(MysqlStore::new(&direct).unwrap());
        let url = format!("{}?stream=queue&lease=60s", nats.url());
        let writer = Arc::new(JetStreamJournal::connect(&url).await.unwrap());
        let drainer = Arc::new(JetStreamJournal::connect(&url).await.unwrap());
        drainer.register(Account::SCHEMA);
        // A server that took the lease and stalled.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let lease = async_nats::jetstream::new(client)
            .get_key_value("queue_drainer")
            .await
            .unwrap();
        let stalled = lease.create("drainer", "stalled".into()).await.unwrap();
        let down = || octopus::Error::unavailable("mysql", "down");
        writer
            .write(
                Account::SCHEMA,
                &Write::Insert(super::row(1, 10, 1)),
                None,
                down(),
            )
            .await
            .unwrap();

        let dao = plan(&store, drainer.clone()).await;
        eventually(
            "the server to see the stream's entry",
            Duration::from_secs(5),
            async || check(drainer.pending() > 0, drainer.pending()),
        )
        .await;
        let mut other = Account {
            id: 2,
            balance: 20,
            version: 0,
        };
        assert_eq!(
            dao.create(&mut other).await.unwrap(),
            WriteOutcome::Primary,
            "a key with nothing pending goes to MySQL"
        );
        let mut pending = dao.read(1).await.unwrap().expect("the pending row");
        assert_eq!(pending.balance, 10);
        pending.balance = 11;
        assert_eq!(
            dao.update(&mut pending).await.unwrap(),
            WriteOutcome::Journaled,
            "a key with a pending entry queues behind it"
        );
        assert_eq!(rows(&direct).await, BTreeMap::from([(2, (20, 1))]));

        lease
            .delete_expect_revision("drainer", Some(stalled))
            .await
            .unwrap();
        eventually("the stream to drain", Duration::from_secs(10), async || {
            let left = drainer.pending_now().await.unwrap();
            check(left == 0, (left, Fallback::stats(&*drainer)))
        })
        .await;
        assert_eq!(
            rows(&direct).await,
            BTreeMap::from([(1, (11, 2)), (2, (20, 1))])
        );
    }
}

/// `fallback = "nats://…"` in a config file gives the plan the stream: a
/// write a locked SQLite file cannot take lands in it.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_names_the_stream() {
    let nats = OwnNats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bank.db");
    let text = format!(
        "[default]\nprimary = \"sqlite://{}?busy_timeout_ms=100\"\nfallback = \"{}?stream=configured\"\n\
         [default.breaker]\nwindow = 4\nminimum_calls = 2\nopen_wait = \"10s\"\nhalf_open_calls = 1\n",
        db.display(),
        nats.url()
    );
    let config = octopus::config::Config::from_toml(&text, "bank.toml").unwrap();
    let plans = octopus_adapters::config::plans(&config).await.unwrap();
    let accounts: octopus::Dao<Account> = octopus::Dao::open(plans.default_plan().clone())
        .await
        .unwrap();
    let mut acc = Account {
        id: 1,
        balance: 5,
        version: 0,
    };
    assert_eq!(
        accounts.create(&mut acc).await.unwrap(),
        WriteOutcome::Primary
    );

    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    acc.balance = 6;
    assert_eq!(
        accounts.update(&mut acc).await.unwrap(),
        WriteOutcome::Journaled
    );
    let observer = server(&nats, "configured").await;
    assert_eq!(
        observer.pending_now().await.unwrap(),
        1,
        "the update is in the stream"
    );
    assert_eq!(
        Fallback::pending(&*observer, Account::SCHEMA, &1u64.into())
            .await
            .unwrap(),
        Some(Some(row(1, 6, 2)))
    );
    locker.execute_batch("ROLLBACK").unwrap();
}
