//! Shared helpers of the integration tests: where the real servers are, and
//! a fresh namespace per test so tests run in parallel and re-runs start
//! clean. A server that is not there fails the test with a message saying how
//! to start it; nothing is skipped.

// Each test file uses the helpers it needs.
#![allow(dead_code, unused_imports)]

pub mod history;

#[cfg(feature = "mysql")]
pub use self::mysql::*;

#[cfg(feature = "memcache")]
pub use self::memcache::*;

#[cfg(feature = "memcache")]
mod memcache {
    use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};

    /// `OCTOPUS_MEMCACHE_URL`, default `memcache://127.0.0.1:11211`.
    pub fn memcache_url() -> String {
        std::env::var("OCTOPUS_MEMCACHE_URL")
            .unwrap_or_else(|_| "memcache://127.0.0.1:11211".into())
    }

    /// A namespace no earlier run has used, so a re-run starts clean.
    pub fn fresh_namespace(name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut ns = format!("{name}-{nanos:x}");
        ns.truncate(64);
        ns
    }

    /// A memcached process of the test's own, on a free port, so a test can
    /// stop and restart it. Killed when dropped.
    pub struct OwnMemcached {
        pub port: u16,
        child: Option<std::process::Child>,
    }

    impl OwnMemcached {
        pub fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut own = OwnMemcached { port, child: None };
            own.restart();
            own
        }

        /// Starts the process again on the same port and waits until it
        /// accepts connections.
        pub fn restart(&mut self) {
            assert!(self.child.is_none(), "already running");
            let child = std::process::Command::new("memcached")
                .args([
                    "-l",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "0",
                    "-m",
                    "16",
                    "-u",
                    "nobody",
                ])
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start memcached ({e}); install it with ./scripts/services.sh")
                });
            self.child = Some(child);
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("memcached on port {} did not start", self.port);
        }

        /// Kills the process (SIGKILL) and waits for it to exit.
        pub fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }

        pub fn url(&self) -> String {
            format!("memcache://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for OwnMemcached {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// A store on the test server under a fresh namespace for `name`,
    /// checked to answer.
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
}

#[cfg(feature = "mysql")]
mod mysql {
    use mysql_async::prelude::Queryable;
    use octopus_adapters::mysql::MysqlStore;

    /// `OCTOPUS_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`.
    pub fn mysql_url() -> String {
        std::env::var("OCTOPUS_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
    }

    /// The server's URL with its database replaced by `database`.
    pub fn url_with_database(database: &str) -> String {
        let url = mysql_url();
        let (base, query) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
        let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
        match query {
            Some(q) => format!("{root}/{database}?{q}"),
            None => format!("{root}/{database}"),
        }
    }

    /// Creates (after dropping) database `octopus_<name>` and returns its URL.
    pub async fn fresh_database(name: &str) -> String {
        let database = format!("octopus_{name}");
        assert!(database.len() <= 64, "database name too long: {database}");
        let admin_url = format!(
            "{}?prefer_socket=false",
            mysql_url().split('?').next().unwrap()
        );
        let mut conn = mysql_async::Conn::from_url(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MySQL at {} is not reachable ({e}); start it with ./scripts/services.sh",
                    mysql_url()
                )
            });
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE DATABASE `{database}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        url_with_database(&database)
    }

    /// A store on a fresh database for test `name`.
    pub async fn mysql_store(name: &str) -> MysqlStore {
        MysqlStore::new(&fresh_database(name).await).unwrap()
    }
}

/// Polls `done` every 10 ms for up to `secs` seconds; panics with `what`
/// if it never holds.
pub async fn eventually(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..secs * 100 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
