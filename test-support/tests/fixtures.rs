//! The fixtures against the real servers: fresh databases and namespaces are
//! distinct and empty, old fresh databases are swept, a process of the
//! test's own stops and restarts.

#[cfg(feature = "mysql")]
mod mysql {
    use mysql_async::prelude::Queryable;
    use octopus_test_support::mysql::{admin, fresh_database};

    async fn exists(database: &str) -> bool {
        let mut conn = admin().await;
        let found: Option<String> = conn
            .exec_first(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                (database,),
            )
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        found.is_some()
    }

    fn database_of(url: &str) -> String {
        let opts = mysql_async::Opts::from_url(url).unwrap();
        opts.db_name().unwrap().to_owned()
    }

    #[tokio::test]
    async fn fresh_databases_are_distinct_named_after_their_test_and_fit() {
        let a = database_of(&fresh_database("fixture_twice").await);
        let b = database_of(&fresh_database("fixture_twice").await);
        assert_ne!(a, b);
        assert!(a.starts_with("octopus_fixture_twice_"), "{a}");
        assert!(exists(&a).await && exists(&b).await);
        let long = "a_test_name_far_longer_than_a_database_name_may_be_in_mysql";
        let c = database_of(&fresh_database(long).await);
        assert!(c.len() <= 64 && c.starts_with("octopus_a_test_name"), "{c}");
    }

    #[tokio::test]
    async fn an_old_fresh_database_is_dropped_by_a_later_one_of_its_name() {
        let old = "octopus_fixture_sweep_1000_1_0";
        let mut conn = admin().await;
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{old}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        let new = database_of(&fresh_database("fixture_sweep").await);
        assert!(!exists(old).await, "{old} was left");
        assert!(exists(&new).await);
    }
}

#[cfg(feature = "memcache")]
mod memcache {
    use octopus_test_support::memcache::{OwnMemcached, fresh_namespace, memcache_store};

    #[test]
    fn fresh_namespaces_are_distinct_and_fit() {
        let long = "n".repeat(100);
        let (a, b) = (fresh_namespace(&long), fresh_namespace(&long));
        assert_ne!(a, b);
        assert!(a.len() <= 64, "{a}");
    }

    #[tokio::test]
    async fn a_store_on_the_test_server_answers() {
        memcache_store("fixture").await;
    }

    #[tokio::test]
    async fn an_own_memcached_stops_and_restarts() {
        let mut own = OwnMemcached::start().await;
        assert!(own.is_running());
        own.stop();
        assert!(!own.is_running());
        assert!(std::net::TcpStream::connect(("127.0.0.1", own.port)).is_err());
        own.restart().await;
        std::net::TcpStream::connect(("127.0.0.1", own.port)).unwrap();
    }
}
