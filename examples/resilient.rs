//! Octopus through a database outage, end to end, against real servers:
//! MySQL or PostgreSQL (behind a fault proxy this example controls) as the
//! primary, memcached and the in-process cache in front, and the journal as
//! the fallback. It prints a timeline and exits 0 only if the database ends
//! holding exactly the last write of every key.
//!
//! ```text
//! ./scripts/services.sh     # MariaDB, PostgreSQL and memcached, as for the tests
//! cargo run -p octopus-examples --example resilient --features resilient
//! OCTOPUS_PRIMARY_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run -p octopus-examples --example resilient --features resilient,postgres
//! ```
//!
//! The primary is the one URL that changes between vendors:
//! `OCTOPUS_PRIMARY_URL` (default `mysql://root@127.0.0.1:3306/test`) is
//! opened as a config file's `primary` is, with its host and port swapped
//! for the fault proxy's. `OCTOPUS_MEMCACHE_URL` points at another
//! memcached. The example owns the table `resilient_orders` in that
//! database: it empties it first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Mode};
use octopus::config::UrlParts;
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerOptions, BreakerState, CachePolicy, Dao, Key, MemoryOptions, MemoryStore, Model, Plan,
    Store, WriteOutcome,
};
use octopus_adapters::config::open_store;
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};

/// An order, versioned so a stale update is refused even during the outage.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "resilient_orders")]
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

/// What the example checks the database against: the last acknowledged
/// write of every key.
type Expected = BTreeMap<u64, Order>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let t = Arc::new(Timeline(Instant::now()));
    let url = std::env::var("OCTOPUS_PRIMARY_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let memcache_url = std::env::var("OCTOPUS_MEMCACHE_URL")
        .unwrap_or_else(|_| "memcache://127.0.0.1:11211".into());
    let vendor = Vendor::of(&url)?;

    // The database reached directly (to empty the table and for the final
    // check, around Octopus) and through the fault proxy (by Octopus).
    let direct = open_store(&url).await?;
    empty_the_table(direct.as_ref()).await?;
    let (server, proxied) = via_proxy(&url, vendor).await?;
    let proxy = FaultProxy::start(server).await?;
    let primary = open_store(&proxied(proxy.addr())).await?;
    let journal_dir = tempfile::tempdir()?;
    let plan = Arc::new(plan(primary, &memcache_url, journal_dir.path()).await?);
    let timeline = t.clone();
    plan.breaker()
        .on_state_change(move |store, _, to| match to {
            BreakerState::Open => timeline.say(format!(
                "breaker opened on {store}: calls fail fast, writes go to the journal"
            )),
            BreakerState::HalfOpen => timeline.say(format!("breaker half-open: probing {vendor}")),
            BreakerState::Closed => timeline.say(format!("breaker closed: {vendor} answers again")),
        });
    let shop = Shop::open(plan.clone()).await?;
    let mut expected = Expected::new();

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
        "healthy: 20 orders written to {vendor} and read back (through proxy {}, {} connections)",
        proxy.addr(),
        proxy.connections()
    ));

    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    t.say(format!(
        "outage starts: {vendor} connections reset, new ones refused"
    ));
    outage(&t, &plan, &shop.orders, &mut expected).await?;

    // The database returns.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Mode::Pass).await;
    t.say(format!("{vendor} back: proxy passes traffic again"));
    catch_up(&t, &plan).await?;
    let mut order = expected[&1].clone();
    order.status = "shipped".into();
    let outcome = shop.orders.update(&mut order).await?;
    expected.insert(1, order);
    t.say(format!("new writes go to {vendor} again: {outcome:?}"));

    verify(&t, vendor, direct.as_ref(), &expected).await
}

/// The database, then the in-process cache, then memcached; a breaker that trips
/// after 3 failed calls in 10; a journal in a temporary directory.
async fn plan(
    primary: Arc<dyn Store>, memcache_url: &str, journal_dir: &std::path::Path,
) -> Result<Plan, Failure> {
    let namespace = format!("resilient-{}", std::process::id());
    let cache = Arc::new(
        MemcacheStore::with_options(
            MemcacheOptions::from_url(memcache_url)?.namespace(&namespace)?,
        )
        .await?,
    );
    let journal = Journal::open(journal_dir, JournalOptions::default())?;
    Ok(Plan::builder(primary)
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
        .build()?)
}

/// Writes while the database is unreachable: updates, creates and a
/// delete, all acknowledged as journaled; reads served from the caches and
/// the journal; a stale update refused.
async fn outage(
    t: &Timeline, plan: &Plan, orders: &Dao<Order>, expected: &mut Expected,
) -> Result<(), Failure> {
    let mut journaled = 0;
    for round in 0..3 {
        for id in 1..=20u64 {
            let mut order = expected[&id].clone();
            order.status = format!("paid-{round}");
            order.total_cents += 1;
            if orders.update(&mut order).await? == WriteOutcome::Journaled {
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
        if orders.create(&mut order).await? == WriteOutcome::Journaled {
            journaled += 1;
        }
        expected.insert(id, order);
    }
    orders.delete(30u64).await?;
    expected.remove(&30);
    journaled += 1;
    t.say(format!(
        "writes journaled: {journaled} acknowledged during the outage, {} pending",
        plan.stats().fallback.map_or(0, |f| f.pending)
    ));
    let read = orders.read(7u64).await?.ok_or("order 7 not served")?;
    let created = orders.read(25u64).await?.ok_or("order 25 not served")?;
    t.say(format!(
        "reads served without the database: order 7 is {:?} (v{}), order 25 (created during the outage) is {:?}",
        read.status, read.version, created.status
    ));
    let mut stale = expected[&7].clone();
    stale.version -= 1;
    let refused = orders.update(&mut stale).await.is_err();
    t.say(format!(
        "a stale update during the outage is refused: {refused}"
    ));
    Ok(())
}

/// Follows the plan's mode until it is healthy with nothing pending.
async fn catch_up(t: &Timeline, plan: &Plan) -> Result<(), Failure> {
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
    let j = plan.stats().fallback.unwrap_or_default();
    t.say(format!(
        "caught up: journal empty after replaying {} entries ({} dead letters)",
        j.replayed, j.dead_letters
    ));
    Ok(())
}

/// Every row of the table, read from the database directly.
async fn stored_rows(direct: &dyn Store) -> Result<Expected, Failure> {
    let mut rows = Expected::new();
    let mut after: Option<Key> = None;
    loop {
        let page = direct.scan(Order::SCHEMA, after.as_ref(), 1000).await?;
        let Some(last) = page.last() else {
            return Ok(rows);
        };
        after = Some(octopus::key_of(Order::SCHEMA, last)?);
        for record in page {
            let order = Order::from_record(record)?;
            rows.insert(order.id, order);
        }
    }
}

/// Creates the example's table if it is missing and deletes its rows.
async fn empty_the_table(direct: &dyn Store) -> Result<(), Failure> {
    direct.ensure_schema(Order::SCHEMA).await?;
    let keys: Vec<Key> = stored_rows(direct)
        .await?
        .keys()
        .map(|&id| id.into())
        .collect();
    if !keys.is_empty() {
        direct.delete_many(Order::SCHEMA, &keys).await?;
    }
    Ok(())
}

/// Checks the database, around Octopus, against the last acknowledged
/// write of every key.
async fn verify(
    t: &Timeline, vendor: Vendor, direct: &dyn Store, expected: &Expected,
) -> Result<(), Failure> {
    let stored = stored_rows(direct).await?;
    if stored != *expected {
        for (id, want) in expected {
            if stored.get(id) != Some(want) {
                t.say(format!(
                    "MISMATCH order {id}: expected {want:?}, {vendor} has {:?}",
                    stored.get(id)
                ));
            }
        }
        return Err(format!("{vendor} does not hold the last write of every key").into());
    }
    t.say(format!(
        "rows verified: {vendor} holds exactly the last write of all {} orders (order 30, deleted during the outage, is gone)",
        expected.len()
    ));
    Ok(())
}

/// The database behind the primary URL.
#[derive(Clone, Copy, Debug)]
enum Vendor {
    Mysql,
    Postgres,
}

impl Vendor {
    fn of(url: &str) -> Result<Self, Failure> {
        match UrlParts::split(url).scheme() {
            Some("mysql") => Ok(Vendor::Mysql),
            Some("postgres" | "postgresql") => Ok(Vendor::Postgres),
            _ => Err(format!(
                "OCTOPUS_PRIMARY_URL must be a mysql:// or postgres:// URL (a server the fault proxy can stand in front of), got {}",
                octopus::config::redact_url(url)
            )
            .into()),
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Vendor::Mysql => 3306,
            Vendor::Postgres => 5432,
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Vendor::Mysql => "MySQL",
            Vendor::Postgres => "PostgreSQL",
        })
    }
}

/// The server `url` names, and a function giving the same URL through a
/// proxy at another address (with a 300 ms deadline per call unless the
/// URL sets one).
async fn via_proxy(
    url: &str, vendor: Vendor,
) -> Result<
    (
        std::net::SocketAddr,
        impl Fn(std::net::SocketAddr) -> String,
    ),
    Failure,
> {
    let parts = UrlParts::split(url);
    let location = parts.location();
    let host_port = location.split('/').next().unwrap_or_default();
    let start = url.len() - parts.query().map_or(0, |q| q.len() + 1) - location.len();
    let (before, after) = (&url[..start], &url[start + host_port.len()..]);
    let target = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{}", vendor.default_port())
    };
    let server = tokio::net::lookup_host(&target)
        .await?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))?;
    let deadline = match parts.query() {
        Some(q) if q.split('&').any(|p| p.starts_with("deadline_ms=")) => "",
        Some(_) => "&deadline_ms=300",
        None => "?deadline_ms=300",
    };
    let (before, after) = (before.to_owned(), after.to_owned());
    Ok((server, move |proxy: std::net::SocketAddr| {
        format!("{before}{proxy}{after}{deadline}")
    }))
}
