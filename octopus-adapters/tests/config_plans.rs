//! Plans from config: moving the primary from SQLite to MySQL is a config
//! change only, and bad URLs and keys are errors naming them.

use octopus::config::Config;
use octopus::{Deletion, Error, Model};
use octopus_adapters::config::{open_cache, open_store, plans};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "notes")]
struct Note {
    #[octopus(key)]
    id: u64,
    text: String,
    #[octopus(version)]
    version: u32,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "tags")]
struct Tag {
    #[octopus(key)]
    name: String,
}

octopus::models! {
    struct App { notes: Note, tags: Tag }
}

/// The application: it knows nothing of where its data lives.
async fn application(config: &Config) -> octopus::Result<()> {
    let app = App::open(plans(config).await?).await?;
    let mut note = Note {
        id: 1,
        text: "first".into(),
        version: 0,
    };
    app.notes.create(&mut note).await?;
    note.text = "edited".into();
    app.notes.update(&mut note).await?;
    assert_eq!(app.notes.read(1u64).await?, Some(note.clone()));
    app.tags.create(&mut Tag { name: "x".into() }).await?;
    assert_eq!(app.tags.read("x").await?.map(|t| t.name), Some("x".into()));
    assert_eq!(app.notes.delete(1u64).await?, Deletion::Deleted);
    assert_eq!(app.notes.read(1u64).await?, None);
    Ok(())
}

#[cfg(all(feature = "sqlite", feature = "mysql", feature = "memcache"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_application_runs_on_sqlite_and_on_mysql() {
    use octopus_test_support::memcache::{fresh_namespace, memcache_url};
    use octopus_test_support::mysql::fresh_database;
    let dir = tempfile::tempdir().unwrap();
    let memcache = memcache_url();
    let namespace = fresh_namespace("switch");
    let sqlite = format!(
        r#"
        [default]
        primary = "sqlite://{}"
        caches = [{{ url = "memory://?capacity=1000&ttl=60s" }}]

        [models.tags]
        caches = [{{ url = "{memcache}?namespace={namespace}", policy = "write_through" }}]
        "#,
        dir.path().join("app.db").display()
    );
    let config = Config::from_toml(&sqlite, "sqlite.toml").unwrap();
    application(&config).await.unwrap();

    // The one change: the primary's URL, here from the environment.
    let mysql_url = fresh_database("config_switch").await;
    let vars = [("OCTOPUS__DEFAULT__PRIMARY".to_owned(), mysql_url)];
    let config = Config::from_toml_with_env(&sqlite, "sqlite.toml", vars).unwrap();
    assert!(
        config
            .default
            .primary
            .as_deref()
            .unwrap()
            .starts_with("mysql://")
    );
    application(&config).await.unwrap();
}

#[tokio::test]
async fn bad_urls_are_errors_naming_them() {
    let cases = [
        ("oracle://x/y", "unknown store"),
        ("postgres://x/y?bogus=1", "unknown parameter `bogus`"),
        ("memcache://127.0.0.1:11211", "not a primary"),
        ("memory://?capacity=lots", "capacity"),
        ("memory://?ttl=soon", "ttl"),
        ("memory://?size=3", "unknown parameter `size`"),
        ("sqlite://", "sqlite://path"),
        ("sqlite://x.db?mode=fast", "unknown parameter `mode`"),
    ];
    for (url, expect) in cases {
        let err = open_store(url).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, Error::Config { reason, .. } if reason.contains(expect)),
            "{url}: {err:?}"
        );
    }
    let err = open_cache("sqlite://x.db").await.map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("cannot be a cache")),
        "{err:?}"
    );
    let err = open_cache("memcache://nohost")
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("host:port")),
        "{err:?}"
    );
    let err = open_store("mysql://app:secret@db:3306/shop?pool_size=0")
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
}

#[tokio::test]
async fn a_plan_for_a_table_no_model_uses_is_an_error() {
    let config = Config::from_toml(
        "[default]\nprimary = \"memory://\"\n[models.notse]\nprimary = \"memory://\"\n",
        "app.toml",
    )
    .unwrap();
    let err = App::open(plans(&config).await.unwrap())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "models.notse"),
        "{err:?}"
    );
}

#[tokio::test]
async fn plans_sharing_a_primary_share_its_breaker() {
    let config = Config::from_toml(
        "[default]\nprimary = \"memory://one\"\n[models.tags]\ncaches = [{ url = \"memory://\" }]\n",
        "app.toml",
    )
    .unwrap();
    let p = plans(&config).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(
        p.for_table("tags").breaker(),
        p.for_table("notes").breaker()
    ));
    let config = Config::from_toml(
        "[default]\nprimary = \"memory://one\"\n[models.tags.breaker]\nwindow = 3\nminimum_calls = 3\n",
        "app.toml",
    )
    .unwrap();
    let err = plans(&config).await.map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "models.tags.breaker"),
        "{err:?}"
    );
}
