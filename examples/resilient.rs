//! Octopus through a MySQL outage, end to end, against the real servers:
//! MySQL (behind a fault proxy this example controls) as the primary,
//! memcached and the in-process cache in front, and the journal as the
//! fallback. It prints a timeline and exits 0 only if MySQL ends holding
//! exactly the last write of every key.
//!
//! ```text
//! ./scripts/services.sh     # MariaDB and memcached, as for the tests
//! cargo run -p octopus-examples --example resilient --features resilient
//! ```
//!
//! `OCTOPUS_MYSQL_URL` and `OCTOPUS_MEMCACHE_URL` point it elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerOptions, BreakerState, CachePolicy, MemoryOptions, MemoryStore, Model, Plan,
    WriteOutcome,
};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;

/// An order, versioned so a stale update is refused even during the outage.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "orders")]
struct Order {
    #[octopus(key)]
    id: u64,
    total_cents: i64,
    status: String,
    #[octopus(version)]
    version: u64,
}

octopus::models! {
    /// The shop's models.
    struct Shop { orders: Order }
}

/// Prints one timeline line.
struct Timeline(Instant);

impl Timeline {
    fn say(&self, what: impl std::fmt::Display) {
        println!("[{:6.2}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let t = Arc::new(Timeline(Instant::now()));
    let mysql_url = std::env::var("OCTOPUS_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let memcache_url = std::env::var("OCTOPUS_MEMCACHE_URL")
        .unwrap_or_else(|_| "memcache://127.0.0.1:11211".into());

    // A fresh database, reached directly (for setup and the final check)
    // and through the fault proxy (by Octopus).
    let opts = mysql_async::Opts::from_url(&mysql_url)?;
    let server = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    let user = opts.user().unwrap_or("root").to_owned();
    let base = mysql_url.split('?').next().unwrap_or(&mysql_url);
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    let direct_url = format!("{root}/octopus_resilient");
    {
        let mut admin = mysql_async::Conn::from_url(format!("{base}?prefer_socket=false")).await?;
        admin
            .query_drop("DROP DATABASE IF EXISTS octopus_resilient")
            .await?;
        admin
            .query_drop("CREATE DATABASE octopus_resilient")
            .await?;
        admin.disconnect().await?;
    }
    let proxy = FaultProxy::start(server.parse()?).await?;
    let password = opts.pass().map(|p| format!(":{p}")).unwrap_or_default();
    let primary = Arc::new(MysqlStore::new(&format!(
        "mysql://{user}{password}@{}/octopus_resilient?deadline_ms=300",
        proxy.addr()
    ))?);
    let namespace = format!("resilient-{}", std::process::id());
    let cache = Arc::new(
        MemcacheStore::with_options(
            MemcacheOptions::from_url(&memcache_url)?.namespace(&namespace)?,
        )
        .await?,
    );
    let journal_dir = tempfile::tempdir()?;
    let journal = Journal::open(journal_dir.path(), JournalOptions::default())?;
    let plan = Plan::builder(primary.clone())
        .cache(
            Arc::new(MemoryStore::with_options(
                MemoryOptions::new().capacity(10_000),
            )),
            CachePolicy::Invalidate,
        )
        .cache(cache, CachePolicy::Invalidate)
        .breaker(BreakerOptions {
            window: 10,
            minimum_calls: 3,
            open_wait: Duration::from_millis(800),
            half_open_calls: 2,
            ..BreakerOptions::default()
        })
        .journal(journal)
        .build()?;
    let timeline = t.clone();
    plan.breaker()
        .on_state_change(move |store, _, to| match to {
            BreakerState::Open => timeline.say(format!(
                "breaker opened on {store}: calls fail fast, writes go to the journal"
            )),
            BreakerState::HalfOpen => timeline.say("breaker half-open: probing MySQL"),
            BreakerState::Closed => timeline.say("breaker closed: MySQL answers again"),
        });
    let plan = Arc::new(plan);
    let shop = Shop::open(plan.clone()).await?;
    let mut expected: BTreeMap<u64, Order> = BTreeMap::new();

    // Healthy.
    for id in 1..=20 {
        let mut order = Order {
            id,
            total_cents: 1000 + id as i64,
            status: "new".into(),
            version: 0,
        };
        shop.orders.create(&mut order).await?;
        expected.insert(id, order);
    }
    for id in 1..=20u64 {
        shop.orders.read(id).await?;
    }
    t.say(format!(
        "healthy: 20 orders written to MySQL and read back (through proxy {}, {} connections)",
        proxy.addr(),
        proxy.connections()
    ));

    // The outage.
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    t.say("outage starts: MySQL connections reset, new ones refused");
    let mut journaled = 0;
    for round in 0..3 {
        for id in 1..=20u64 {
            let mut order = expected[&id].clone();
            order.status = format!("paid-{round}");
            order.total_cents += 1;
            if shop.orders.update(&mut order).await? == WriteOutcome::Journaled {
                journaled += 1;
            }
            expected.insert(id, order);
        }
    }
    for id in 21..=30 {
        let mut order = Order {
            id,
            total_cents: 500,
            status: "new".into(),
            version: 0,
        };
        if shop.orders.create(&mut order).await? == WriteOutcome::Journaled {
            journaled += 1;
        }
        expected.insert(id, order);
    }
    shop.orders.delete(30u64).await?;
    expected.remove(&30);
    journaled += 1;
    t.say(format!(
        "writes journaled: {journaled} acknowledged during the outage, {} pending",
        plan.stats().fallback.map_or(0, |f| f.pending)
    ));
    let read = shop.orders.read(7u64).await?.ok_or("order 7 not served")?;
    let created = shop
        .orders
        .read(25u64)
        .await?
        .ok_or("order 25 not served")?;
    t.say(format!(
        "reads served without MySQL: order 7 is {:?} (v{}), order 25 (created during the outage) is {:?}",
        read.status, read.version, created.status
    ));
    let mut stale = expected[&7].clone();
    stale.version -= 1;
    let refused = shop.orders.update(&mut stale).await.is_err();
    t.say(format!(
        "a stale update during the outage is refused: {refused}"
    ));

    // MySQL returns.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Mode::Pass).await;
    t.say("MySQL back: proxy passes traffic again");
    let mut modes = plan.watch_mode();
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mode = *modes.borrow_and_update();
            let pending = plan.stats().fallback.map_or(0, |f| f.pending);
            t.say(format!("mode {mode:?}: {pending} entries pending"));
            if mode == octopus::Mode::Healthy && pending == 0 {
                break;
            }
            if modes.changed().await.is_err() {
                break;
            }
        }
    });
    drained
        .await
        .map_err(|_| "the journal did not drain within 30 s")?;
    let stats = plan.stats();
    let j = stats.fallback.clone().unwrap_or_default();
    t.say(format!(
        "caught up: journal empty after replaying {} entries ({} dead letters)",
        j.replayed, j.dead_letters
    ));
    let mut order = expected[&1].clone();
    order.status = "shipped".into();
    let outcome = shop.orders.update(&mut order).await?;
    expected.insert(1, order);
    t.say(format!("new writes go to MySQL again: {outcome:?}"));

    // Verify MySQL directly, around Octopus.
    let mut conn = mysql_async::Conn::from_url(format!("{direct_url}?prefer_socket=false")).await?;
    let rows: Vec<(u64, i64, String, u64)> = conn
        .query("SELECT id, total_cents, status, version FROM orders ORDER BY id")
        .await?;
    conn.disconnect().await?;
    let stored: BTreeMap<u64, Order> = rows
        .into_iter()
        .map(|(id, total_cents, status, version)| {
            (
                id,
                Order {
                    id,
                    total_cents,
                    status,
                    version,
                },
            )
        })
        .collect();
    if stored != expected {
        for (id, want) in &expected {
            if stored.get(id) != Some(want) {
                t.say(format!(
                    "MISMATCH order {id}: expected {want:?}, MySQL has {:?}",
                    stored.get(id)
                ));
            }
        }
        return Err("MySQL does not hold the last write of every key".into());
    }
    t.say(format!(
        "rows verified: MySQL holds exactly the last write of all {} orders (order 30, deleted during the outage, is gone)",
        expected.len()
    ));
    Ok(())
}
