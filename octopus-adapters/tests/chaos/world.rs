//! Setup: MySQL behind a fault proxy, a memcached of the test's own, a
//! journal directory, and the application (a plan over them and its Dao),
//! which the restart outage replaces.

use std::sync::Arc;
use std::time::Duration;

use fault_proxy::FaultProxy;
use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, CachePolicy, Dao, MemoryOptions, MemoryStore, Plan};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::memcache::OwnMemcached;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use tokio::sync::RwLock;

use crate::{Item, MEMCACHE_TIMEOUT_MS, MYSQL_DEADLINE_MS};

/// The servers and the journal's directory: what outlives an Octopus
/// restart.
pub struct World {
    /// In front of MySQL: the outages of MySQL.
    pub proxy: FaultProxy,
    /// Killed and restarted by the outages of memcached.
    pub memcached: OwnMemcached,
    mysql: Arc<MysqlStore>,
    memcache: Arc<MemcacheStore>,
    journal_dir: tempfile::TempDir,
    /// The test's database, reached directly (not through the proxy).
    pub direct_url: String,
}

/// The application: a plan and its Dao, behind a lock the restart takes.
pub struct App {
    pub plan: Arc<Plan>,
    pub items: Dao<Item>,
}

impl App {
    /// Opens the application on a plan.
    pub async fn open(plan: Arc<Plan>) -> App {
        let items = Dao::open(plan.clone()).await.unwrap();
        App { plan, items }
    }

    /// A stand-in while a restart's old plan lets go of the journal.
    pub fn placeholder() -> App {
        let plan = Arc::new(Plan::new(MemoryStore::new()));
        App {
            items: Dao::new(plan.clone()),
            plan,
        }
    }
}

impl World {
    /// A fresh database behind a fault proxy and a memcached of the test's
    /// own, each with the test's deadlines.
    pub async fn start() -> World {
        let direct_url = fresh_database("chaos").await;
        let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
        let params = format!("deadline_ms={MYSQL_DEADLINE_MS}&pool_size=8");
        let proxied = url_via(&direct_url, proxy.addr(), &params);
        let mysql = Arc::new(MysqlStore::new(&proxied).unwrap());
        let memcached = OwnMemcached::start().await;
        let timeout = Duration::from_millis(MEMCACHE_TIMEOUT_MS);
        let options = MemcacheOptions::from_url(&memcached.url())
            .unwrap()
            .timeout(timeout)
            .connect_timeout(timeout);
        let memcache = Arc::new(MemcacheStore::with_options(options).await.unwrap());
        World {
            proxy,
            memcached,
            mysql,
            memcache,
            journal_dir: tempfile::tempdir().unwrap(),
            direct_url,
        }
    }

    /// The application's first start; checks that the proxy is really in
    /// the path (so refusing makes calls fail).
    pub async fn open_app(&self) -> Arc<RwLock<App>> {
        let app = App::open(self.plan().await).await;
        app.items.read(0u64).await.unwrap();
        assert!(
            self.proxy.connections() > 0,
            "MySQL is reached without the proxy"
        );
        Arc::new(RwLock::new(app))
    }

    /// A plan over MySQL, the in-process cache, memcached and the journal
    /// (whose lock the previous plan, closed, has let go of).
    pub async fn plan(&self) -> Arc<Plan> {
        let journal = Journal::open(self.journal_dir.path(), JournalOptions::default());
        let memory = MemoryStore::with_options(MemoryOptions::new().capacity(1000));
        Arc::new(
            Plan::builder(self.mysql.clone())
                .cache(Arc::new(memory), CachePolicy::Invalidate)
                .cache(self.memcache.clone(), CachePolicy::Invalidate)
                .breaker(BreakerOptions {
                    window: 10,
                    minimum_calls: 4,
                    failure_rate: 0.5,
                    slow_call_duration: Duration::from_millis(400),
                    slow_call_rate: 0.8,
                    open_wait: Duration::from_millis(400),
                    half_open_calls: 2,
                    half_open_max_wait: Duration::from_secs(2),
                })
                .herd_wait(Duration::from_millis(MYSQL_DEADLINE_MS + 100))
                .journal(journal.expect("the journal reopens"))
                .build()
                .unwrap(),
        )
    }
}
