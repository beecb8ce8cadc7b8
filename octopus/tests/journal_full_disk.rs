//! A full disk, for real: the journal lives on a small tmpfs the test mounts.
//! Appends fail with a clear error while it is full and the pending count
//! counts only acknowledged entries; replay still checkpoints (the
//! checkpoint never needs new space), so it frees the disk by itself; then
//! appends work again; and the primary ends with exactly the acknowledged
//! writes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, Key, MemoryStore, Model, Plan, Store, Write};
use octopus_test_support::{Scripted, Step};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "crates")]
struct Crate {
    #[octopus(key)]
    id: u64,
    label: String,
}

fn create(id: u64) -> Write {
    let c = Crate {
        id,
        label: format!("crate {id} {}", "x".repeat(200)),
    };
    Write::Insert(c.to_record().unwrap())
}

/// A tmpfs of `size` mounted at a new directory; unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("this test runs `mount` (util-linux)");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs at {} and needs root (or CAP_SYS_ADMIN): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path, _dir: dir }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_cleanly_and_replay_frees_it() {
    let disk = SmallDisk::mount("512k");
    let dir = disk.path().join("journal");
    let options = || JournalOptions::default().segment_bytes(32 * 1024);
    let journal = Journal::open(&dir, options()).unwrap();

    // Fill the disk: every append is acknowledged or fails, none hangs.
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    let (mut error, mut last_seq) = (None, 0);
    for id in 0..10_000u64 {
        match journal.append(Crate::SCHEMA, &create(id)).await {
            Ok(seq) => {
                acknowledged.push(id);
                last_seq = seq;
            }
            Err(e) => {
                failed.push(id);
                error.get_or_insert(e.to_string());
                if failed.len() == 20 {
                    break;
                }
            }
        }
    }
    let error = error.expect("the disk filled up");
    assert!(
        error.contains("No space left on device")
            && error.contains(&disk.path().display().to_string()),
        "the error says what and where: {error}"
    );
    assert_eq!(
        journal.pending(),
        acknowledged.len() as u64,
        "only acknowledged entries are pending"
    );
    // Callers that give up while their append fails leave no count behind.
    let cancelled: Vec<_> = (0..50u64)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.append(Crate::SCHEMA, &create(500_000 + i)).await })
        })
        .collect();
    for task in &cancelled {
        task.abort();
    }
    for task in cancelled {
        if let Ok(Ok(_)) = task.await {
            panic!("an append succeeded on a full disk");
        }
    }

    // Replay, with the disk still full: it checkpoints and frees segments.
    let primary = Arc::new(MemoryStore::new());
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _dao: Dao<Crate> = Dao::new(plan.clone());
    if tokio::time::timeout(Duration::from_secs(30), plan.drained())
        .await
        .is_err()
    {
        panic!("replay did not drain a full disk: {:?}", journal.stats());
    }
    // The disk has room again. The failed appends' sequence numbers are
    // not given again.
    let next = 1_000_000;
    let seq = journal.append(Crate::SCHEMA, &create(next)).await.unwrap();
    assert!(
        seq > last_seq + failed.len() as u64,
        "entry {seq} after {last_seq} and {} failed appends: a failed append's number was reused",
        failed.len()
    );
    acknowledged.push(next);
    tokio::time::timeout(Duration::from_secs(30), plan.drained())
        .await
        .expect("the new entry drains");
    plan.close().await.unwrap();

    // The journal, with its gap, opens again and goes on from there.
    let journal = Journal::open(&dir, options()).unwrap();
    assert_eq!(journal.pending(), 0);
    let after = journal
        .append(Crate::SCHEMA, &create(next + 1))
        .await
        .unwrap();
    assert_eq!(after, seq + 1);
    journal.close().await.unwrap();

    // The primary holds exactly what was acknowledged.
    assert_eq!(
        stored(&primary, &acknowledged, false).await,
        Vec::<u64>::new(),
        "acknowledged crates missing"
    );
    assert_eq!(
        stored(&primary, &failed, true).await,
        Vec::<u64>::new(),
        "crates whose append failed, applied"
    );
}

/// Writers and replay overlap on a disk that keeps filling up: replay is
/// slow at first (so the disk fills), then catches up and frees it. Every
/// append is acknowledged or fails; the primary ends with every
/// acknowledged row and none whose append failed, whatever the failed
/// batches left in the page cache or in the replayer's read buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_replay_overlap_on_a_disk_that_fills_up() {
    let disk = SmallDisk::mount("192k");
    let dir = disk.path().join("journal");
    let journal = Journal::open(&dir, JournalOptions::default().segment_bytes(16 * 1024)).unwrap();
    let primary = Scripted::new();
    primary.then_n(30, || Step::Slow(Duration::from_millis(20)));
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _dao: Dao<Crate> = Dao::new(plan.clone());
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for i in 0..1500u64 {
                    let id = w * 100_000 + i;
                    match journal.append(Crate::SCHEMA, &create(id)).await {
                        Ok(_) => ok.push(id),
                        Err(_) => failed.push(id),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for w in writers {
        let (ok, bad) = w.await.unwrap();
        acknowledged.extend(ok);
        failed.extend(bad);
    }
    assert!(!failed.is_empty(), "the disk never filled up");
    if tokio::time::timeout(Duration::from_secs(60), plan.drained())
        .await
        .is_err()
    {
        panic!("the journal did not drain: {:?}", journal.stats());
    }
    plan.close().await.unwrap();
    let missing = stored(&primary.inner, &acknowledged, false).await;
    let applied_failed = stored(&primary.inner, &failed, true).await;
    assert!(
        missing.is_empty() && applied_failed.is_empty(),
        "{} acknowledged, {} failed; acknowledged but missing: {:?}; failed but applied: {:?}",
        acknowledged.len(),
        failed.len(),
        missing,
        applied_failed
    );
}

/// Those of `ids` whose row the store holds (`present`) or lacks.
async fn stored(store: &MemoryStore, ids: &[u64], present: bool) -> Vec<u64> {
    let mut out = Vec::new();
    for id in ids {
        let row = store.get(Crate::SCHEMA, &Key::UInt(*id)).await.unwrap();
        if row.is_some() == present {
            out.push(*id);
        }
    }
    out
}
