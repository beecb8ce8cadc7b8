//! What the primary would refuse is never queued, and what it refuses at
//! replay never sticks the drain.
//!
//! - During an outage, a value the primary's own rules refuse (NaN on
//!   SQLite; an infinity or a text key over 768 characters on MySQL) is
//!   refused at once with the store's error, and nothing is journaled.
//! - At replay, entries refused by rules the journal could not know (a
//!   unique index or a foreign key a DBA added during the outage) are
//!   dead-lettered one by one (the batch is split to find them) while every
//!   other entry is applied; wide rows whose batch exceeds MySQL's
//!   `max_allowed_packet` replay in pieces.
#![cfg(all(feature = "sqlite", feature = "mysql"))]

use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, Dao, Error, Model, Plan, Store, WriteOutcome};
use octopus_adapters::mysql::MysqlStore;
use octopus_adapters::sqlite::{SqliteOptions, SqliteStore};
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "readings")]
struct Reading {
    #[octopus(key)]
    id: String,
    value: f64,
    #[octopus(version)]
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "members")]
struct Member {
    #[octopus(key)]
    id: u64,
    email: String,
    #[octopus(version)]
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "parents")]
struct Parent {
    #[octopus(key)]
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "children")]
struct Child {
    #[octopus(key)]
    id: u64,
    parent: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "wide")]
struct Wide {
    #[octopus(key)]
    id: u64,
    body: String,
    #[octopus(version)]
    version: u64,
}

fn quick() -> BreakerOptions {
    BreakerOptions {
        window: 4,
        minimum_calls: 2,
        open_wait: Duration::from_millis(100),
        half_open_calls: 1,
        ..BreakerOptions::default()
    }
}

fn plan(primary: Arc<dyn Store>, journal: Journal) -> Arc<Plan> {
    Arc::new(
        Plan::builder(primary)
            .breaker(quick())
            .journal(journal)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_nan_at_once_during_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("readings.db");
    let options = SqliteOptions::default().busy_timeout(Duration::from_millis(100));
    let store = SqliteStore::open_with(&db, options).await.unwrap();
    let journal = Journal::open(dir.path().join("journal"), JournalOptions::default()).unwrap();
    let plan = plan(Arc::new(store), journal.clone());
    let readings: Dao<Reading> = Dao::open(plan.clone()).await.unwrap();
    let live = readings
        .create(&mut Reading {
            id: "live".into(),
            value: f64::NAN,
            version: 0,
        })
        .await
        .unwrap_err();
    // Another process holds the file: SQLite is unavailable. Two writes
    // open the breaker, so the next ones go straight to the journal.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut fine = Vec::new();
    for id in ["fine-1", "fine-2"] {
        let mut r = Reading {
            id: id.into(),
            value: 1.5,
            version: 0,
        };
        assert_eq!(
            readings.create(&mut r).await.unwrap(),
            WriteOutcome::Journaled
        );
        fine.push(r);
    }
    assert_eq!(plan.breaker().state(), octopus::BreakerState::Open);
    let outage = readings
        .create(&mut Reading {
            id: "outage".into(),
            value: f64::NAN,
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        outage.to_string(),
        live.to_string().replace("live", "outage"),
        "the same error as a live write"
    );
    // A key with a pending entry: its writes queue in the journal.
    let mut queued = fine[0].clone();
    queued.value = f64::NAN;
    assert!(matches!(
        readings.update(&mut queued).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(journal.pending(), 2, "nothing refused was journaled");
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .expect("the journal drains");
    assert_eq!(
        readings.read("fine-1").await.unwrap(),
        Some(fine[0].clone())
    );
    assert_eq!(journal.stats().dead_letters, 0);
}

/// A MySQL plan behind a fault proxy, and a direct connection for the
/// test's own statements (the DBA's).
struct Mysql {
    proxy: FaultProxy,
    direct: mysql_async::Conn,
    plan: Arc<Plan>,
    journal: Journal,
    _dir: tempfile::TempDir,
}

async fn mysql(name: &str) -> Mysql {
    let url = fresh_database(name).await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let store = MysqlStore::new(&url_via(&url, proxy.addr(), "deadline_ms=1000")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let direct = mysql_async::Conn::from_url(format!("{url}?prefer_socket=false"))
        .await
        .unwrap();
    Mysql {
        plan: plan(Arc::new(store), journal.clone()),
        proxy,
        direct,
        journal,
        _dir: dir,
    }
}

impl Mysql {
    async fn outage(&self) {
        self.proxy.set(Mode::Reset).await;
        self.proxy.set(Mode::Refuse).await;
    }

    async fn back_and_drained(&self) {
        self.proxy.set(Mode::Pass).await;
        if tokio::time::timeout(Duration::from_secs(20), self.plan.drained())
            .await
            .is_err()
        {
            panic!("the journal did not drain: {:?}", self.journal.stats());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refuses_what_it_cannot_hold_at_once_during_an_outage() {
    let m = mysql("refusals_values").await;
    let readings: Dao<Reading> = Dao::open(m.plan.clone()).await.unwrap();
    m.outage().await;
    // Two journaled writes open the breaker: later writes go straight to
    // the journal, which checks them by MySQL's rules.
    for id in ["a", "b"] {
        let mut r = Reading {
            id: id.into(),
            value: 1.0,
            version: 0,
        };
        assert_eq!(
            readings.create(&mut r).await.unwrap(),
            WriteOutcome::Journaled
        );
    }
    assert_eq!(m.plan.breaker().state(), octopus::BreakerState::Open);
    for value in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
        let err = readings
            .create(&mut Reading {
                id: "r".into(),
                value,
                version: 0,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid { .. }) && err.to_string().contains("`value`"),
            "{value}: {err}"
        );
    }
    let long = "k".repeat(769);
    let err = readings
        .create(&mut Reading {
            id: long,
            value: 1.0,
            version: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert_eq!(m.journal.pending(), 2, "nothing refused was journaled");
    m.back_and_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_index_added_during_an_outage_dead_letters_only_its_culprit() {
    let mut m = mysql("refusals_unique").await;
    let members: Dao<Member> = Dao::open(m.plan.clone()).await.unwrap();
    let mut first = Member {
        id: 1,
        email: "a@example.com".into(),
        version: 0,
    };
    members.create(&mut first).await.unwrap();
    m.outage().await;
    for id in 2..=60 {
        // Member 30 reuses the first member's address.
        let email = if id == 30 {
            "a@example.com".to_owned()
        } else {
            format!("m{id}@example.com")
        };
        let mut member = Member {
            id,
            email,
            version: 0,
        };
        assert_eq!(
            members.create(&mut member).await.unwrap(),
            WriteOutcome::Journaled
        );
    }
    // A DBA adds a unique index meanwhile.
    m.direct
        .query_drop("CREATE UNIQUE INDEX members_email ON members (email)")
        .await
        .unwrap();
    m.back_and_drained().await;
    let letters = m.journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.key.to_string(), "30");
    assert!(
        letters[0].error.contains("uplicate"),
        "{}",
        letters[0].error
    );
    let count: Option<u64> = m
        .direct
        .query_first("SELECT COUNT(*) FROM members")
        .await
        .unwrap();
    assert_eq!(count, Some(59), "every other member was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_added_during_an_outage_dead_letters_only_its_culprit() {
    let mut m = mysql("refusals_fk").await;
    let parents: Dao<Parent> = Dao::open(m.plan.clone()).await.unwrap();
    let children: Dao<Child> = Dao::open(m.plan.clone()).await.unwrap();
    parents.create(&mut Parent { id: 1 }).await.unwrap();
    m.outage().await;
    for id in 0..20 {
        let parent = if id == 7 { 99 } else { 1 };
        children.create(&mut Child { id, parent }).await.unwrap();
    }
    m.direct
        .query_drop("ALTER TABLE children ADD FOREIGN KEY (parent) REFERENCES parents (id)")
        .await
        .unwrap();
    m.back_and_drained().await;
    let letters = m.journal.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.key.to_string(), "7");
    assert!(
        letters[0].error.contains("foreign key"),
        "{}",
        letters[0].error
    );
    assert_eq!(children.read(7u64).await.unwrap(), None);
    assert_eq!(
        children.read(8u64).await.unwrap(),
        Some(Child { id: 8, parent: 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_wider_than_max_allowed_packet_replays_in_pieces() {
    let mut m = mysql("refusals_wide").await;
    let packet: Option<u64> = m
        .direct
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap();
    let packet = packet.unwrap();
    // 1000 rows (one replay batch) of together 2.5 packets.
    let width = usize::try_from(packet * 5 / 2 / 1000).unwrap();
    let wide: Dao<Wide> = Dao::open(m.plan.clone()).await.unwrap();
    m.outage().await;
    let tasks: Vec<_> = (0..1000u64)
        .map(|id| {
            let wide = wide.clone();
            tokio::spawn(async move {
                let mut row = Wide {
                    id,
                    body: format!("{id:08}").repeat(width / 8),
                    version: 0,
                };
                wide.create(&mut row).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), WriteOutcome::Journaled);
    }
    m.back_and_drained().await;
    assert_eq!(m.journal.stats().dead_letters, 0);
    let sizes: Option<(u64, u64)> = m
        .direct
        .query_first("SELECT COUNT(*), SUM(LENGTH(body)) FROM wide")
        .await
        .unwrap();
    assert_eq!(sizes, Some((1000, 1000 * (width / 8 * 8) as u64)));
}
