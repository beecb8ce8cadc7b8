//! A chain of fallbacks from config, `fallback = ["nats://…", "file://…"]`:
//! with MySQL cut off, writes go to the fleet's stream; with nats-server
//! killed too, to the local journal; reads see the newest pending write
//! wherever it is; and once both come back the local journal drains
//! behind the stream's older entries of the same keys, so every write
//! lands in the order it was acknowledged (a local entry applied first
//! would make the stream's older one overwrite it, or a dead letter of the
//! newer).
#![cfg(all(feature = "mysql", feature = "nats"))]

use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use octopus::config::Config;
use octopus::{Dao, Model, Store, WriteOutcome};
use octopus_adapters::config::plans;
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::nats::OwnNats;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "parcels")]
struct Parcel {
    #[octopus(key)]
    id: u64,
    place: String,
    #[octopus(version)]
    version: u64,
}

octopus::models! {
    struct Depot { parcels: Parcel }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_journal_takes_over_from_the_stream_and_drains_behind_it() {
    let direct = fresh_database("fallback_chain").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let mut nats = OwnNats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[default]\nprimary = \"{}\"\n\
         fallback = [\"{}?stream=chain&timeout=500ms\", \"file://{}\"]\n\
         [default.breaker]\nwindow = 4\nminimum_calls = 2\nopen_wait = \"200ms\"\nhalf_open_calls = 1\n",
        url_via(&direct, proxy.addr(), "deadline_ms=300&pool_size=4"),
        nats.url(),
        dir.path().join("journal").display(),
    );
    let config = Config::from_toml(&text, "depot.toml").unwrap();
    let depot = Depot::open(plans(&config).await.unwrap()).await.unwrap();
    let parcels: &Dao<Parcel> = &depot.parcels;
    let mut a = Parcel {
        id: 1,
        place: "dock".into(),
        version: 0,
    };
    let mut b = Parcel {
        id: 2,
        place: "dock".into(),
        version: 0,
    };
    parcels.create(&mut a).await.unwrap();
    parcels.create(&mut b).await.unwrap();

    // MySQL cut off: the stream takes the write.
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    a.place = "truck".into();
    assert_eq!(
        parcels.update(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );

    // nats-server killed too: the local journal takes the next writes,
    // one of them of the key the stream holds an entry of.
    nats.stop();
    a.place = "van".into();
    assert_eq!(
        parcels.update(&mut a).await.unwrap(),
        WriteOutcome::Journaled
    );
    b.place = "shelf".into();
    assert_eq!(
        parcels.update(&mut b).await.unwrap(),
        WriteOutcome::Journaled
    );
    let seen = |p: Option<Parcel>| p.map(|p| (p.place, p.version));
    assert_eq!(
        seen(parcels.read(1u64).await.unwrap()),
        Some(("van".into(), 3))
    );
    assert_eq!(
        seen(parcels.read(2u64).await.unwrap()),
        Some(("shelf".into(), 2))
    );

    // MySQL back, nats-server still down: the local entries wait (the
    // stream may hold older ones of their keys). Then nats-server back.
    proxy.set(Mode::Pass).await;
    nats.restart().await;
    let plan = parcels.plan();
    tokio::time::timeout(Duration::from_secs(30), plan.drained())
        .await
        .unwrap_or_else(|_| panic!("the chain did not drain: {:?}", plan.stats()));
    let mysql = MysqlStore::new(&direct).unwrap();
    for (id, place, version) in [(1u64, "van", 3u64), (2, "shelf", 2)] {
        let row = mysql
            .get(Parcel::SCHEMA, &octopus::Key::UInt(id))
            .await
            .unwrap()
            .map(|r| Parcel::from_record(r).unwrap());
        assert_eq!(
            seen(row),
            Some((place.to_owned(), version)),
            "parcel {id} in MySQL"
        );
    }
    let stats = plan.stats().fallback.unwrap();
    assert_eq!((stats.dead_letters, stats.pending), (0, 0), "{stats:?}");
}
