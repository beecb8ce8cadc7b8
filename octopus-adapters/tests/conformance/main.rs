//! The one conformance suite, instantiated for every store. A store joins
//! with one `conformance!` line.

mod apply;
mod models;
mod suite;

use std::sync::Arc;

use octopus::{MemoryStore, Store};
use suite::{Fixture, FloatPolicy};

macro_rules! conformance {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;
            conformance!(@tests $fixture;
                crud_round_trip,
                read_missing_is_none,
                duplicate_create_is_refused_and_writes_nothing,
                update_of_missing_key_is_not_found,
                stale_version_is_a_conflict_and_writes_nothing,
                delete_of_missing_key_is_not_found_not_an_error,
                every_field_type_round_trips,
                non_finite_floats_follow_the_store_policy,
                u64_keys_cover_the_whole_range,
                string_keys_generate_and_hold_anything,
                read_many_keeps_order_and_misses,
                scan_pages_in_key_order,
                upsert_inserts_then_replaces,
                upsert_many_writes_every_row,
                malformed_records_are_refused_and_write_nothing,
                concurrent_writers_all_land,
                apply_create_on_an_absent_key_writes,
                apply_create_of_a_present_key_keeps_the_row,
                apply_update_at_the_expected_version_writes,
                apply_update_at_another_version_is_a_conflict,
                apply_update_of_a_missing_key_is_not_found,
                apply_of_a_change_already_stored_passes,
                apply_delete_checks_the_version,
                apply_unconditional_delete_of_a_missing_key_is_ok,
                apply_exists_on_an_unversioned_model,
                apply_mixed_batch_writes_only_passing_changes,
                apply_large_batch_works,
                validate_refuses_what_a_write_would_refuse,
            );
        }
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let fixture: Fixture = $fixture(stringify!($test)).await;
            suite::$test(&fixture).await;
        }
    )*};
}

async fn memory(_test: &str) -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        floats: FloatPolicy::AllStored,
        scans: true,
        _guard: Box::new(()),
    }
}

#[cfg(feature = "sqlite")]
async fn sqlite_file(_test: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = octopus_adapters::sqlite::SqliteStore::open(dir.path().join("conformance.db"))
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store) as Arc<dyn Store>,
        floats: FloatPolicy::NanRefused,
        scans: true,
        _guard: Box::new(dir),
    }
}

#[cfg(feature = "sqlite")]
async fn sqlite_memory(_test: &str) -> Fixture {
    Fixture {
        store: Arc::new(octopus_adapters::sqlite::SqliteStore::memory().unwrap()),
        floats: FloatPolicy::NanRefused,
        scans: true,
        _guard: Box::new(()),
    }
}

conformance!(memory_store, memory);
#[cfg(feature = "sqlite")]
conformance!(sqlite_file_store, sqlite_file);
#[cfg(feature = "sqlite")]
conformance!(sqlite_memory_store, sqlite_memory);

#[cfg(feature = "mysql")]
async fn mysql(test: &str) -> Fixture {
    let store = octopus_test_support::mysql::mysql_store(&format!("conf_{test}")).await;
    Fixture {
        store: Arc::new(store),
        floats: FloatPolicy::NonFiniteRefused,
        scans: true,
        _guard: Box::new(()),
    }
}

#[cfg(feature = "mysql")]
conformance!(mysql_store, mysql);

#[cfg(feature = "memcache")]
async fn memcache(test: &str) -> Fixture {
    Fixture {
        store: Arc::new(
            octopus_test_support::memcache::memcache_store(&format!("conf-{test}")).await,
        ),
        floats: FloatPolicy::AllStored,
        scans: false,
        _guard: Box::new(()),
    }
}

#[cfg(feature = "memcache")]
conformance!(memcache_store, memcache);

#[cfg(feature = "postgres")]
async fn postgres(test: &str) -> Fixture {
    let store = octopus_test_support::postgres::postgres_store(&format!("conf_{test}")).await;
    Fixture {
        store: Arc::new(store),
        floats: FloatPolicy::AllStored,
        scans: true,
        _guard: Box::new(()),
    }
}

#[cfg(feature = "postgres")]
conformance!(postgres_store, postgres);
