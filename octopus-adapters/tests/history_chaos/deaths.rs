//! The fleet through a death: three processes share the stream, MySQL is
//! cut off, all three journal writes on the hot keys, and one process is
//! SIGKILLed and never restarted: a writer during the outage, or the
//! drainer (the lease holder) just after MySQL returns, with the stream
//! still full. Or nats-server is SIGKILLed mid-outage, and each process's
//! writes go to its own journal, chained behind the stream
//! (`FallbackChain`), until it is back. The two survivors drain everything, the dead process's
//! entries included (another takes the lease over within its time), and
//! the history holds: every write the dead process was told was journaled
//! is in MySQL or superseded.

use std::process::Child;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use octopus_test_support::{check as holds, eventually};

use super::faults::{Fault, World};
use super::{Spawn, check, fresh_namespace, kill, now, process_dirs, seed, setting, start_nats};
use octopus_adapters::mysql::MysqlStore;

/// Which process dies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Victim {
    /// p2, during the outage.
    Writer,
    /// The drainer, once MySQL is back, mid-drain.
    Drainer,
    /// Not a process: nats-server, mid-outage (each process chains its own
    /// journal behind the stream; killed with SIGKILL, restarted on its
    /// store before MySQL returns).
    NatsServer,
}

/// The drainer's lease time in these runs.
const LEASE: Duration = Duration::from_secs(2);

/// Completions of process `dir` with `outcome`.
fn completions(dir: &std::path::Path, outcome: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("history")).unwrap_or_default();
    let tag = format!(" {outcome} ");
    text.lines()
        .filter(|l| l.starts_with("C ") && l.contains(&tag))
        .count()
}

/// The lease holder's name, and the messages pending in the stream.
async fn drainer(js: &jetstream::Context) -> (Option<String>, u64) {
    let holder = match js.get_key_value("history_drainer").await {
        Ok(kv) => kv
            .get("drainer")
            .await
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(_) => None,
    };
    let pending = match js.get_stream("history").await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    };
    (holder, pending)
}

pub async fn fleet_with_a_death(victim: Victim, name: &str) {
    let _alone = super::ONE_AT_A_TIME.lock().await;
    let secs = setting("OCTOPUS_HISTORY_SECS", 12).max(10);
    let mut world = World::start(3, 16.max(secs * 2)).await;
    let (url, memcache) = (world.mysql_url(), world.memcache_url());
    let mysql = MysqlStore::new(&world.mariadb.app_url("deadline_ms=5000")).unwrap();
    let initial = seed(&mysql).await;
    let work = tempfile::tempdir().unwrap();
    let mut nats = start_nats().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let dirs = process_dirs(work.path(), 3);
    let spawn = Spawn {
        url: &url,
        memcache: &memcache,
        namespace: &fresh_namespace(name),
        until: now() + secs * 1_000_000_000,
        nats: Some(format!(
            "{}?stream=history&lease={}s&timeout=200ms",
            nats.url(),
            LEASE.as_secs()
        )),
        chain: victim == Victim::NatsServer,
    };
    let mut children: Vec<Option<Child>> = (0..3)
        .map(|n| {
            Some(
                spawn
                    .command(n, &dirs[n], &world.journal(n))
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    eventually(
        "every process working",
        Duration::from_secs(30),
        async || {
            let done: Vec<usize> = dirs.iter().map(|d| completions(d, "ok")).collect();
            holds(done.iter().all(|&n| n >= 20), done)
        },
    )
    .await;

    world.cut_mysql(true).await;
    let cut = now();
    let what = "each process told of journaled writes";
    eventually(what, Duration::from_secs(20), async || {
        let journaled: Vec<usize> = dirs.iter().map(|d| completions(d, "journaled")).collect();
        holds(journaled.iter().all(|&n| n >= 200), journaled)
    })
    .await;
    let dead = match victim {
        Victim::NatsServer => {
            let before: usize = dirs.iter().map(|d| completions(d, "journaled")).sum();
            nats.stop();
            // A key one process journals locally is claimed: the others
            // leave it alone until it drains, so each process journals
            // the keys it claimed first, some more than others.
            let local = || -> Vec<u64> {
                (0..3)
                    .map(|n| {
                        octopus::journal::inspect(&world.journal(n), &mut |_| {})
                            .map_or(0, |s| s.pending_total())
                    })
                    .collect()
            };
            let what = "every process journaling locally with nats-server down";
            let local = eventually(what, Duration::from_secs(30), async || {
                let now: usize = dirs.iter().map(|d| completions(d, "journaled")).sum();
                let local = local();
                let each = local.iter().all(|&n| n > 0);
                if each && now >= before + 90 {
                    Ok(local)
                } else {
                    Err((before, now, local))
                }
            })
            .await;
            eprintln!("nats-server killed mid-outage; local journals hold {local:?} entries");
            nats.restart().await;
            world.cut_mysql(false).await;
            None
        }
        Victim::Writer => {
            kill(children[2].as_mut().unwrap());
            world.note(Fault::AppKilled);
            world.cut_mysql(false).await;
            Some(2)
        }
        Victim::Drainer => {
            world.cut_mysql(false).await;
            let holder =
                eventually(
                    "a drainer holding the lease",
                    LEASE * 3,
                    async || match drainer(&js).await {
                        (Some(h), _) => Ok(h),
                        seen => Err(seen),
                    },
                )
                .await;
            let owners: Vec<String> = dirs
                .iter()
                .map(|d| std::fs::read_to_string(d.join("owner")).unwrap())
                .collect();
            let n = owners.iter().position(|o| *o == holder).unwrap_or_else(|| {
                panic!("the lease holder {holder} is none of the processes {owners:?}")
            });
            kill(children[n].as_mut().unwrap());
            world.note(Fault::AppKilled);
            let (_, pending) = drainer(&js).await;
            assert!(
                pending > 0,
                "the stream drained before its drainer p{n} was killed"
            );
            let killed = Instant::now();
            let what = "another drainer taking the lease over";
            eventually(
                what,
                LEASE + Duration::from_secs(8),
                async || match drainer(&js).await {
                    (Some(h), _) if h != holder => Ok(()),
                    seen => Err(seen),
                },
            )
            .await;
            eprintln!(
                "drainer p{n} killed with {pending} messages pending; another took the lease over {} ms later",
                killed.elapsed().as_millis()
            );
            Some(n)
        }
    };
    eprintln!(
        "MySQL cut off at {cut}, {victim:?} killed ({dead:?}), MySQL back at {}",
        now()
    );
    if let Some(dead) = dead {
        children[dead] = None;
    }
    for (n, child) in children.iter_mut().enumerate() {
        if let Some(child) = child {
            let status = child.wait().unwrap();
            assert!(status.success(), "process p{n} failed: {status}");
        }
    }
    let (_, pending) = drainer(&js).await;
    assert_eq!(pending, 0, "the survivors left entries in the stream");
    world.heal().await;
    check(&world, &mysql, &dirs, &initial, None).await;
}

/// A process SIGKILLed during the outage and never restarted: the
/// survivors drain its journaled writes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_for_good_mid_outage_loses_no_write() {
    fleet_with_a_death(Victim::Writer, "history_killed").await;
}

/// The drainer SIGKILLed mid-drain, never restarted: another process
/// takes the lease over within its time and drains the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drainer_killed_mid_drain_is_replaced_within_its_lease() {
    fleet_with_a_death(Victim::Drainer, "history_drainer_killed").await;
}

/// nats-server SIGKILLed mid-outage: each process's writes go to its own
/// journal, chained behind the stream, and drain once both are back.
/// Each process claims in memcached the keys it journals locally
/// (`MemcacheClaims`), and the others leave them alone until they drain.
///
/// Without claims (the last stop's chain), with hot keys shared: lost=0,
/// stale=21, resurrected=2; a process answered reads from its local
/// entry while others, unaware of it, wrote the key to MySQL, and that
/// entry drained after their newer writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_mid_outage_falls_back_to_local_journals() {
    fleet_with_a_death(Victim::NatsServer, "history_nats_killed").await;
}
