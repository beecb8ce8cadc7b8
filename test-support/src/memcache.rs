//! Fixtures of memcached: the shared test server (`OCTOPUS_MEMCACHE_URL`, by
//! default 127.0.0.1:11211, which `./scripts/services.sh` provisions along
//! with a second one on :11212), a fresh key namespace per test on it, and
//! processes of a test's own ([`OwnMemcached`]) that a test can kill and
//! restart.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};

use crate::eventually;

/// The longest namespace the store accepts.
const NAMESPACE_LIMIT: usize = 64;

/// `OCTOPUS_MEMCACHE_URL`, default `memcache://127.0.0.1:11211`.
pub fn memcache_url() -> String {
    std::env::var("OCTOPUS_MEMCACHE_URL").unwrap_or_else(|_| "memcache://127.0.0.1:11211".into())
}

/// The address of the (first) server of [`memcache_url`]: what a fault proxy
/// in front of it forwards to, or what a raw client connects to.
pub fn memcache_addr() -> SocketAddr {
    let url = memcache_url();
    let hosts = url.trim_start_matches("memcache://");
    let first = hosts.split([',', '?', '/']).next().unwrap_or(hosts);
    first.parse().unwrap_or_else(|e| {
        panic!("OCTOPUS_MEMCACHE_URL `{url}` must start with an IP address and port: {e}")
    })
}

/// A namespace no other test, run or process has used, named after test
/// `name`, so a re-run starts clean and tests share one server.
pub fn fresh_namespace(name: &str) -> String {
    static MADE: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{nanos:x}-{:x}-{n}", std::process::id());
    let mut namespace: String = name.chars().filter(char::is_ascii).collect();
    // Shortened to fit: the suffix alone keeps it unique.
    namespace.truncate(NAMESPACE_LIMIT - suffix.len());
    namespace + &suffix
}

/// A store on the test server under a fresh namespace for test `name`,
/// checked to answer: panics, saying how to start the server, if it does
/// not.
pub async fn memcache_store(name: &str) -> MemcacheStore {
    let options = MemcacheOptions::from_url(&memcache_url())
        .unwrap()
        .namespace(&fresh_namespace(name))
        .unwrap();
    let store = MemcacheStore::with_options(options).await.unwrap();
    assert_answers(&store).await;
    store
}

async fn assert_answers(store: &MemcacheStore) {
    use octopus::Store;
    #[derive(octopus::Model)]
    struct Probe {
        #[octopus(key)]
        id: u8,
    }
    if let Err(e) = store
        .get(<Probe as octopus::Model>::SCHEMA, &0u8.into())
        .await
    {
        panic!(
            "memcached at {} is not reachable ({e}); start it with ./scripts/services.sh",
            memcache_url()
        );
    }
}

/// A memcached process of the test's own, on a free port of 127.0.0.1, so a
/// test can stop and restart it. Killed when dropped.
pub struct OwnMemcached {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl OwnMemcached {
    /// Starts memcached (16 MB, no UDP) on a free port and waits until it
    /// accepts connections. Panics, saying how to install it, if there is
    /// no `memcached` to run.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut own = OwnMemcached { port, child: None };
        own.restart().await;
        own
    }

    /// Starts the process again on the same port (empty) and waits, 2 s at
    /// most, until it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "0", "-m", "16", "-u", "nobody"])
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start memcached ({e}); install it with ./scripts/services.sh")
            });
        self.child = Some(child);
        let what = format!("memcached to listen on port {}", self.port);
        eventually(&what, Duration::from_secs(2), async || {
            TcpStream::connect(("127.0.0.1", self.port)).map(drop)
        })
        .await;
    }

    /// Whether it is running (started and not stopped since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process (SIGKILL) and waits for it to exit; nothing if it
    /// is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Its URL, for a store.
    pub fn url(&self) -> String {
        format!("memcache://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnMemcached {
    fn drop(&mut self) {
        self.stop();
    }
}
