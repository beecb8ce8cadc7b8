//! Stale-if-error: while MySQL is cut off by the fault proxy, a plan that
//! turned it on (from config: `stale_if_error = true` and an in-process
//! cache with `stale_for`) serves rows its cache holds past their TTL, and
//! counts them; never a row a write replaced, never one it was not
//! holding; a plan without it fails the read; once MySQL answers, reads
//! return MySQL's rows again (a row served stale was not refreshed).
#![cfg(feature = "mysql")]

use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::config::Config;
use octopus::{Dao, Lookup, Model, Plan};
use octopus_adapters::config::plans;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::{check, eventually};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "prices")]
struct Price {
    #[octopus(key)]
    id: u64,
    cents: i64,
    #[octopus(version)]
    version: u64,
}

/// A plan over `url` with one in-process cache whose rows expire after
/// 200 ms and are kept 10 minutes past that; stale-if-error as given.
async fn configured_plan(url: &str, stale_if_error: bool) -> Arc<Plan> {
    let text = format!(
        "[default]\nprimary = \"{url}\"\n\
         caches = [{{ url = \"memory://?ttl=200ms&stale_for=10m\" }}]\n\
         stale_if_error = {stale_if_error}\n\
         [default.breaker]\nwindow = 4\nminimum_calls = 2\nopen_wait = \"200ms\"\n"
    );
    let config = Config::from_toml(&text, "prices.toml").unwrap();
    plans(&config).await.unwrap().default_plan().clone()
}

/// Waits until the plan's cache level holds no live row of any of `ids`.
async fn until_expired(plan: &Plan, ids: &[u64]) {
    let cache = plan.caches()[0].clone();
    eventually(
        "the cached rows expire",
        Duration::from_secs(10),
        async || {
            let mut live = Vec::new();
            for &id in ids {
                if let Lookup::Hit(_) = cache.lookup(Price::SCHEMA, &id.into()).await.unwrap() {
                    live.push(id);
                }
            }
            check(live.is_empty(), live)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_primary_is_answered_by_rows_past_their_ttl_and_never_by_replaced_ones() {
    let direct = fresh_database("stale_if_error").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let via = url_via(&direct, proxy.addr(), "deadline_ms=300");
    let plan = configured_plan(&via, true).await;
    let strict = configured_plan(&via, false).await;
    let (prices, strict_prices) = (
        Dao::<Price>::open(plan.clone()).await.unwrap(),
        Dao::<Price>::open(strict.clone()).await.unwrap(),
    );
    let mut rows = Vec::new();
    for id in 1..=3u64 {
        let mut p = Price {
            id,
            cents: 100 * id as i64,
            version: 0,
        };
        prices.create(&mut p).await.unwrap();
        rows.push(p);
    }
    // Rows 1 and 2 are read into the cache; row 2 is then updated (the
    // cache holds a marker for it, not a row); row 3 was never read.
    for id in [1u64, 2] {
        assert_eq!(
            prices.read(id).await.unwrap(),
            Some(rows[id as usize - 1].clone())
        );
        strict_prices.read(id).await.unwrap();
    }
    rows[1].cents = 250;
    prices.update(&mut rows[1]).await.unwrap();
    until_expired(&plan, &[1, 2]).await;
    until_expired(&strict, &[1, 2]).await;

    // Behind Octopus, MySQL's row 1 changes: what the stale row was
    // checked against later.
    let mut conn = mysql_async::Conn::from_url(&direct).await.unwrap();
    conn.query_drop("UPDATE prices SET cents = 111, version = version + 1 WHERE id = 1")
        .await
        .unwrap();

    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    assert_eq!(
        prices.read(1u64).await.unwrap(),
        Some(rows[0].clone()),
        "row 1, past its TTL, is served while the cache holds it and MySQL is down"
    );
    let many = prices.read_many([1u64]).await.unwrap();
    assert_eq!(many, vec![Some(rows[0].clone())]);
    let err = prices.read(2u64).await.unwrap_err();
    assert!(
        err.is_unavailable(),
        "row 2 was replaced by a write: {err:?}"
    );
    let err = prices.read(3u64).await.unwrap_err();
    assert!(err.is_unavailable(), "row 3 was never cached: {err:?}");
    let err = prices.read_many([1u64, 3]).await.unwrap_err();
    assert!(
        err.is_unavailable(),
        "row 3 of the batch has no stale row: {err:?}"
    );
    let err = strict_prices.read(1u64).await.unwrap_err();
    assert!(
        err.is_unavailable(),
        "stale-if-error is off by default: {err:?}"
    );
    assert_eq!(plan.stats().levels[0].stale_served, 2);
    assert_eq!(strict.stats().levels[0].stale_served, 0);

    // MySQL answers again: once the read breaker lets reads through, they
    // return MySQL's row 1 (changed behind Octopus); the row served stale
    // was not refreshed into the cache.
    proxy.set(Mode::Pass).await;
    eventually(
        "reads return MySQL's row 1",
        Duration::from_secs(30),
        async || {
            let read = prices
                .read(1u64)
                .await
                .map(|p| p.map(|p| (p.cents, p.version)));
            check(matches!(read, Ok(Some((111, 2)))), read)
        },
    )
    .await;
}
