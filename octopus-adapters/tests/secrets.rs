//! Passwords never show. Store URLs carry a password holding every
//! character that trips a naive URL parser (`?`, `@`, `%`, `/`, `#`),
//! written raw and percent-encoded, for every scheme a config accepts,
//! valid and not; no error (`Display` or `Debug`), `Debug` of a config,
//! store or options, stats snapshot or log line shows the password, its
//! percent-encoded form or any piece of it.
//!
//! Environment overrides are given to `Config::from_toml_with_env` as a
//! list: the process environment is never touched, so tests running in
//! parallel cannot race on it.
#![cfg(all(feature = "sqlite", feature = "mysql", feature = "memcache"))]

use std::time::Duration;

use octopus::config::Config;
use octopus::{Model, Store};
use octopus_adapters::config::{open_cache, open_store, plans};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;

/// Every character that ends a part of a URL, and a `%` that starts no
/// escape (`%qx` is not hex), so the raw form means what it says.
const PASSWORD: &str = "qx7alpha?qx7bravo@qx7charlie%qx7zulu/qx7delta#qx7echo";
/// [`PASSWORD`] percent-encoded, as a careful user writes it.
const ENCODED: &str = "qx7alpha%3Fqx7bravo%40qx7charlie%25qx7zulu%2Fqx7delta%23qx7echo";
/// In every piece of the password and nowhere else: a part of the password
/// cut at one of its special characters still contains it.
const MARK: &str = "qx7";
/// The MariaDB account [`a_password_with_every_special_character_reaches_the_server`]
/// creates with [`PASSWORD`] (and drops); the other tests only name it.
const USER: &str = "octopus_secrets";

#[derive(Debug, Model)]
#[octopus(table = "secret_things")]
struct Thing {
    #[octopus(key)]
    id: u64,
}

octopus::models! {
    struct App { things: Thing }
}

/// Fails if `shown` holds the password in any form.
#[track_caller]
fn assert_hidden(what: &str, shown: &str) {
    assert!(
        !shown.contains(PASSWORD),
        "{what} shows the password: {shown}"
    );
    assert!(
        !shown.contains(ENCODED),
        "{what} shows the percent-encoded password: {shown}"
    );
    assert!(
        !shown.contains(MARK),
        "{what} shows a piece of the password: {shown}"
    );
}

/// Fails if the error, or the store, shows the password.
#[track_caller]
fn assert_outcome_hidden<T, E>(what: &str, outcome: &Result<T, E>)
where
    T: std::fmt::Debug,
    E: std::fmt::Display + std::fmt::Debug,
{
    match outcome {
        Ok(value) => assert_hidden(what, &format!("{value:?}")),
        Err(e) => assert_hidden(what, &format!("{e} {e:?}")),
    }
}

/// The password as written in URLs: raw, then percent-encoded.
fn both_forms() -> [&'static str; 2] {
    [PASSWORD, ENCODED]
}

fn mysql_url(password: &str, host: &str, query: &str) -> String {
    format!("mysql://{USER}:{password}@{host}/test{query}")
}

/// A port nothing listens on.
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn configs_show_no_password() {
    for pw in both_forms() {
        let text = format!(
            r#"
            [default]
            primary = "mysql://{USER}:{pw}@127.0.0.1:3306/test"
            caches = [
              {{ url = "memory://{USER}:{pw}@local?capacity=10" }},
              {{ url = "memcache://{USER}:{pw}@127.0.0.1:11211", policy = "write_through" }},
            ]
            [models.things]
            primary = "sqlite://{USER}:{pw}@/tmp/things.db"
            "#
        );
        let config = Config::from_toml(&text, "app.toml").unwrap();
        assert_hidden("Debug of Config", &format!("{config:?}"));
        assert_hidden("{:#?} of Config", &format!("{config:#?}"));
        let plan = config.plan_for("things");
        assert_hidden("Debug of PlanConfig", &format!("{plan:?}"));
        let cache = &config.default.caches.as_ref().unwrap()[1];
        assert_hidden("Debug of CacheConfig", &format!("{cache:?}"));

        let vars = [
            (
                "OCTOPUS__DEFAULT__PRIMARY".to_owned(),
                mysql_url(pw, "127.0.0.1:3306", ""),
            ),
            (
                "OCTOPUS__MODELS__THINGS__CACHES".to_owned(),
                format!("memcache://{USER}:{pw}@127.0.0.1:11211;memory://{USER}:{pw}@x"),
            ),
        ];
        let config = Config::from_toml_with_env(&text, "app.toml", vars).unwrap();
        assert_hidden("Debug of Config with overrides", &format!("{config:?}"));
    }
}

#[test]
fn toml_errors_show_no_password() {
    for pw in both_forms() {
        let url = mysql_url(pw, "127.0.0.1:3306", "");
        let broken = [
            // Unterminated string.
            format!("[default]\nprimary = \"{url}\n"),
            // Not quoted.
            format!("[default]\nprimary = {url}\n"),
            // Junk after the value, on the password's line.
            format!("[default]\nprimary = \"{url}\" junk\n"),
            // A duplicate key: the error points at the password's line.
            format!("[default]\nprimary = \"x\"\nprimary = \"{url}\"\n"),
            // A URL where a list belongs: serde quotes the value.
            format!("[default]\nprimary = \"x\"\ncaches = \"{url}\"\n"),
            format!("[default]\nprimary = \"x\"\nherd_wait = \"{url}\"\n"),
        ];
        for text in &broken {
            let outcome = Config::from_toml(text, "app.toml");
            assert!(outcome.is_err(), "{text}");
            assert_outcome_hidden("TOML error", &outcome);
        }
    }
}

#[test]
fn environment_override_errors_show_no_password() {
    let text = "[default]\nprimary = \"memory://\"\n";
    for pw in both_forms() {
        let url = mysql_url(pw, "127.0.0.1:3306", "");
        for name in [
            "OCTOPUS__DEFAULT__HERD_WAIT_MS",
            "OCTOPUS__DEFAULT__BREAKER__FAILURE_RATE",
            "OCTOPUS__DEFAULT__PRIMRY",
            "OCTOPUS__NOWHERE",
        ] {
            let outcome =
                Config::from_toml_with_env(text, "app.toml", [(name.into(), url.clone())]);
            assert!(outcome.is_err(), "{name}");
            assert_outcome_hidden(name, &outcome);
        }
    }
}

/// Opens `url` as a store and as a cache, through the config module and
/// through the backend's own constructor where it has one.
async fn assert_every_opening_hidden(url: &str) {
    let what = format!("open_store({url:?})");
    assert_outcome_hidden(&what, &open_store(url).await.map(|s| s.name().to_owned()));
    let what = format!("open_cache({url:?})");
    assert_outcome_hidden(&what, &open_cache(url).await.map(|c| c.name().to_owned()));
    if url.starts_with("mysql:") {
        assert_outcome_hidden(&format!("MysqlStore::new({url:?})"), &MysqlStore::new(url));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres:") {
        use octopus_adapters::postgres::PostgresStore;
        let store = PostgresStore::new(url);
        assert_outcome_hidden(&format!("PostgresStore::new({url:?})"), &store);
        if let Ok(store) = store {
            assert_hidden("Debug of PostgresStore", &format!("{store:?}"));
            let ping = tokio::time::timeout(Duration::from_secs(5), store.ping())
                .await
                .expect("ping hung past the deadline");
            assert_outcome_hidden(&format!("PostgresStore::ping({url:?})"), &ping);
        }
    }
    if url.starts_with("memcache:") {
        let options = MemcacheOptions::from_url(url);
        assert_outcome_hidden(&format!("MemcacheOptions::from_url({url:?})"), &options);
        let store = MemcacheStore::connect(url).await;
        assert_outcome_hidden(&format!("MemcacheStore::connect({url:?})"), &store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_urls_show_no_password_valid_or_not() {
    logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().display();
    for pw in both_forms() {
        let urls = [
            mysql_url(pw, "127.0.0.1:3306", ""),
            mysql_url(pw, "127.0.0.1:3306", "?bogus=1"),
            mysql_url(pw, "127.0.0.1:3306", "?pool_size=2&pool_size=3"),
            mysql_url(pw, "127.0.0.1:3306", "?pool_size=none"),
            mysql_url(pw, "127.0.0.1:99999", ""),
            mysql_url(pw, "127.0.0.1:port", ""),
            mysql_url(pw, "", ""),
            format!("mysql://{USER}:{pw}@127.0.0.1:3306"),
            format!("memcache://{USER}:{pw}@127.0.0.1:11211"),
            format!("memcache://{USER}:{pw}@127.0.0.1:11211?bogus=1"),
            format!("memcache://{USER}:{pw}@127.0.0.1:99999"),
            format!("memcache://127.0.0.1:11211?password={pw}"),
            mysql_url("", "127.0.0.1:3306", &format!("?password={pw}")),
            format!("sqlite://{USER}:{pw}@{dir}/a.db"),
            format!("sqlite://{USER}:{pw}@{dir}/a.db?bogus=1"),
            format!("memory://{USER}:{pw}@name"),
            format!("memory://{USER}:{pw}@name?capacity=lots"),
            format!("postgres://{USER}:{pw}@127.0.0.1:5432/test"),
            format!("postgres://{USER}:{pw}@127.0.0.1:5432/test?bogus=1"),
            format!("postgres://{USER}:{pw}@127.0.0.1:5432/test?deadline_ms=300&sslmode=require"),
            format!("postgresql://{USER}:{pw}@127.0.0.1:99999/test"),
            format!(
                "postgres://{USER}:{pw}@127.0.0.1:{}/test?deadline_ms=300",
                refused_port()
            ),
            format!("postgres://{USER}:{pw}@127.0.0.1:5432"),
            format!("memory://?password={pw}"),
            format!("sqlite://{dir}/b.db?password={pw}"),
        ];
        for url in &urls {
            assert_every_opening_hidden(url).await;
        }
    }
    assert_hidden("the logs", &logs::all());
}

/// Only MySQL has a login: the other schemes refuse a password rather
/// than carry it into a path, a store's name or a server list.
#[tokio::test]
async fn schemes_without_a_login_refuse_a_password() {
    let refused = |outcome: &octopus::Result<String>| matches!(outcome, Err(octopus::Error::Config { reason, .. }) if reason.contains("takes no user or password"));
    for pw in both_forms() {
        let store = open_store(&format!("sqlite://{USER}:{pw}@/tmp/a.db")).await;
        assert!(refused(&store.map(|s| s.name().to_owned())), "sqlite");
        for url in [
            format!("memory://{USER}:{pw}@name"),
            format!("memcache://{USER}:{pw}@127.0.0.1:11211"),
        ] {
            let cache = open_cache(&url).await;
            assert!(refused(&cache.map(|c| c.name().to_owned())), "{url}");
        }
    }
}

/// A primary that refuses connections, behind a plan built from config
/// (without a journal, so opening fails): its errors, the plan's stats and
/// the breaker's log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_shows_no_password() {
    logs::capture();
    for pw in both_forms() {
        let port = refused_port();
        let primary = mysql_url(pw, &format!("127.0.0.1:{port}"), "?deadline_ms=300");
        let text = format!(
            "[default]\nprimary = \"{primary}\"\ncaches = [{{ url = \"memory://\" }}]\n\
             [default.breaker]\nwindow = 2\nminimum_calls = 2\n"
        );
        let config = Config::from_toml(&text, "app.toml").unwrap();
        let plans = plans(&config).await;
        assert_outcome_hidden("plans", &plans.as_ref().map(|_| ()));
        let plans = plans.unwrap();
        assert_hidden("Debug of Plans", &format!("{plans:?}"));
        let plan = plans.default_plan().clone();
        // Opening ensures the table in the primary, through its breaker:
        // it fails, then the breaker opens.
        for _ in 0..4 {
            let outcome = tokio::time::timeout(Duration::from_secs(5), App::open(plans.clone()))
                .await
                .expect("opening hung past the deadline");
            assert!(outcome.is_err(), "the primary refuses connections");
            assert_outcome_hidden("App::open", &outcome.map(|_| ()));
        }
        assert_hidden("Debug of stats", &format!("{:?}", plan.stats()));
        let store = MysqlStore::new(&primary).unwrap();
        assert_hidden("Debug of MysqlStore", &format!("{store:?}"));
        assert_outcome_hidden("ping", &store.ping().await);
        // The sink sees what the plan logs about this store, by its name.
        let name = format!("mysql://{USER}@127.0.0.1:{port}/test");
        let lines = logs::all();
        assert!(
            lines.contains(&name) && lines.contains("circuit opened"),
            "the breaker's log lines name the store: {lines}"
        );
    }
    assert_hidden("the logs", &logs::all());
}

/// The password, raw or encoded, reaches MariaDB intact: both URLs log in
/// as an account that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_with_every_special_character_reaches_the_server() {
    logs::capture();
    admin(&format!(
        "CREATE OR REPLACE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
         GRANT ALL ON test.* TO '{USER}'@'%'"
    ))
    .await;
    for pw in both_forms() {
        let url = mysql_url(pw, "127.0.0.1:3306", "?deadline_ms=2000");
        let store = MysqlStore::new(&url).unwrap();
        store.ping().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_hidden("Debug of a connected MysqlStore", &format!("{store:?}"));
        assert_eq!(store.name(), format!("mysql://{USER}@127.0.0.1:3306/test"));
        store.close().await.unwrap();
    }
    // A wrong password is refused by the server; its message holds none.
    let url = mysql_url("qx7wrong", "127.0.0.1:3306", "?deadline_ms=2000");
    let store = MysqlStore::new(&url).unwrap();
    let outcome = store.ping().await;
    assert!(outcome.is_err(), "a wrong password logs in");
    assert_outcome_hidden("a refused login", &outcome);
    admin(&format!("DROP USER '{USER}'@'%'")).await;
    assert_hidden("the logs", &logs::all());
}

async fn admin(sql: &str) {
    use mysql_async::prelude::Queryable;
    let mut conn = octopus_test_support::mysql::admin().await;
    conn.query_drop(sql).await.unwrap();
    conn.disconnect().await.unwrap();
}

/// Every `tracing` event and span of this test binary, formatted into one
/// buffer: a minimal subscriber, so no formatting crate is needed. It is
/// the global default (set once), so events from every runtime thread are
/// caught.
mod logs {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, Once};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    static LINES: Mutex<String> = Mutex::new(String::new());

    /// Installs the sink (once per binary).
    pub fn capture() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            tracing::subscriber::set_global_default(Sink::default())
                .expect("no other global subscriber");
        });
    }

    /// Everything logged so far, one line per event or span.
    pub fn all() -> String {
        LINES.lock().unwrap().clone()
    }

    #[derive(Default)]
    struct Sink {
        next_id: AtomicU64,
    }

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn push(what: &Metadata<'_>, fields: impl FnOnce(&mut Line)) {
        let mut line = Line(format!("{} {}:", what.level(), what.target()));
        fields(&mut line);
        line.0.push('\n');
        LINES.lock().unwrap().push_str(&line.0);
    }

    impl Subscriber for Sink {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            push(span.metadata(), |line| span.record(line));
            Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
        }

        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut line = Line("span record:".into());
            values.record(&mut line);
            line.0.push('\n');
            LINES.lock().unwrap().push_str(&line.0);
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            push(event.metadata(), |line| event.record(line));
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }
}
