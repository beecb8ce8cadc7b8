//! The journal's files after what disks, power and people do to them: the
//! checkpoint is checked against the segments (missing, damaged, set ahead,
//! absurd numbers: an error naming it, never a silent replay or drop, never
//! a panic); a power loss that leaves a hole and then later bytes, or that
//! takes entries replay had already applied, still opens; bytes cut off
//! are kept in a quarantine file; and what replay is done with is not read
//! again.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Durability, Journal, JournalOptions};
use octopus::{Dao, MemoryStore, Model, Plan, Write};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "parcels")]
struct Parcel {
    #[octopus(key)]
    id: u64,
    label: String,
    #[octopus(version)]
    version: u64,
}

fn parcel(id: u64) -> Write {
    let p = Parcel {
        id,
        label: format!("parcel {id}"),
        version: 1,
    };
    Write::Insert(p.to_record().unwrap())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("journal-"))
        })
        .collect();
    v.sort();
    v
}

/// A journal in `dir` holding `ids` as pending creates.
async fn journal_with(dir: &Path, ids: impl IntoIterator<Item = u64>, options: JournalOptions) {
    let journal = Journal::open(dir, options).unwrap();
    for id in ids {
        journal.append(Parcel::SCHEMA, &parcel(id)).await.unwrap();
    }
    journal.close().await.unwrap();
}

/// Opening `dir` fails with an error naming the checkpoint; the text.
fn refused(dir: &Path) -> String {
    match Journal::open(dir, JournalOptions::default()) {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("checkpoint"), "{text}");
            text
        }
        Ok(j) => panic!("the journal opened with {} pending entries", j.pending()),
    }
}

#[tokio::test]
async fn a_missing_checkpoint_is_an_error_not_a_replay_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=3, JournalOptions::default()).await;
    fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let text = refused(dir.path());
    assert!(
        text.contains("missing") && text.contains("entries 1 to 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_checkpoint_set_ahead_by_hand_is_an_error_not_a_silent_drop() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=3, JournalOptions::default()).await;
    fs::write(dir.path().join("checkpoint"), "7\n").unwrap();
    let text = refused(dir.path());
    assert!(text.contains("past the journal's last entry (3)"), "{text}");
    // Still pending once the checkpoint is put right.
    fs::write(dir.path().join("checkpoint"), "0\n").unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 3);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn damaged_or_absurd_checkpoints_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=3, JournalOptions::default()).await;
    let path = dir.path().join("checkpoint");
    let written = fs::read_to_string(&path).unwrap();
    assert!(written.contains("\ncrc "), "{written}");
    for text in [
        "18446744073709551615\n",
        "99999999999999999999\n",
        "1\n+18446744073709551615\n",
        "1\nparcels 18446744073709551615\n",
        "4611686018427387905\n",
        "-1\n",
        "",
        "\u{0}\u{0}\u{0}",
        // Neither slot's checksum matches (one damaged slot is a torn
        // write: the other stands).
        &written.replace("crc ", "crc 0"),
    ] {
        fs::write(&path, text).unwrap();
        let err = refused(dir.path());
        assert!(
            err.contains("damaged checkpoint") || err.contains("past"),
            "{text:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_power_loss_during_a_group_commit_leaves_a_journal_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=4, JournalOptions::default()).await;
    let segment = segments(dir.path()).pop().unwrap();
    let acknowledged = fs::metadata(&segment).unwrap().len();
    // The next group commit (entries 5 to 8) was written; the page holding
    // entry 5 and the start of 6 never reached the disk (zeros), the later
    // ones did: the rest of 6, then 7 and 8 whole.
    let text = fs::read_to_string(&segment).unwrap();
    let like = |seq: u64| {
        let line = text.lines().nth(3).unwrap();
        format!("{}\n", line.replace("\"seq\":4", &format!("\"seq\":{seq}")))
    };
    let six = like(6);
    let mut tail = vec![0u8; like(5).len() + six.len() / 2];
    tail.extend_from_slice(&six.as_bytes()[six.len() / 2..]);
    tail.extend_from_slice(like(7).as_bytes());
    tail.extend_from_slice(like(8).as_bytes());
    let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
    f.write_all(&tail).unwrap();
    drop(f);

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 4, "every acknowledged entry is pending");
    assert_eq!(journal.torn_tail(), Some((segment.as_path(), acknowledged)));
    let kept = journal.quarantined().unwrap().to_path_buf();
    assert_eq!(fs::read(&kept).unwrap(), tail, "the cut bytes are kept");
    assert_eq!(kept.parent(), Some(dir.path()));
    // The journal goes on from entry 5.
    journal.append(Parcel::SCHEMA, &parcel(5)).await.unwrap();
    journal.close().await.unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!((journal.pending(), journal.torn_tail()), (5, None));
    journal.close().await.unwrap();
}

#[tokio::test]
async fn an_acknowledged_last_line_damaged_later_is_cut_but_kept() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=3, JournalOptions::default()).await;
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    bytes[last_start + 20] ^= 0x20;
    fs::write(&segment, &bytes).unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 2);
    let kept = fs::read(journal.quarantined().unwrap()).unwrap();
    assert_eq!(kept, &bytes[last_start..], "its bytes are not gone");
    journal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_that_takes_replayed_entries_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        || JournalOptions::default().durability(Durability::Interval(Duration::from_secs(60)));
    journal_with(dir.path(), 1..=6, options()).await;
    // Replay applies all six and checkpoints 6.
    drain(dir.path(), options()).await;
    // The power goes: the last three entries were never synced.
    let segment = segments(dir.path()).pop().unwrap();
    let text = fs::read_to_string(&segment).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    fs::write(&segment, kept).unwrap();

    let journal = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(journal.pending(), 0);
    journal.append(Parcel::SCHEMA, &parcel(7)).await.unwrap();
    journal.close().await.unwrap();
    let journal = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(journal.pending(), 1, "the entry written after the loss");
    journal.close().await.unwrap();
    assert_eq!(segments(dir.path()).len(), 2, "it went to a new segment");
}

/// Replays `dir`'s journal into a fresh primary until it drains; the
/// primary.
async fn drain(dir: &Path, options: JournalOptions) -> Arc<MemoryStore> {
    let journal = Journal::open(dir, options).unwrap();
    let primary = Arc::new(MemoryStore::new());
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _dao: Dao<Parcel> = Dao::new(plan.clone());
    tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .expect("the journal drains");
    plan.close().await.unwrap();
    primary
}

/// Opening, and replay after it, start reading where the checkpoint says
/// the replayed entries end: damage to bytes replay is done with (here,
/// every replayed line of the segment overwritten) neither stops the
/// journal opening nor holds up the replay of what is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_and_replay_skip_what_was_replayed() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=6, JournalOptions::default()).await;
    drain(dir.path(), JournalOptions::default()).await;
    journal_with(dir.path(), 7..=8, JournalOptions::default()).await;
    let segment = segments(dir.path()).pop().unwrap();
    let text = fs::read_to_string(&segment).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 8, "one segment holds all eight entries");
    for line in &mut lines[..6] {
        *line = "x".repeat(line.len());
    }
    fs::write(&segment, lines.join("\n") + "\n").unwrap();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 2, "entries 7 and 8");
    journal.close().await.unwrap();
    let primary = drain(dir.path(), JournalOptions::default()).await;
    let dao: Dao<Parcel> = Dao::new(Arc::new(Plan::builder(primary).build().unwrap()));
    for id in 1..=8 {
        let row = dao.read(id).await.unwrap();
        assert_eq!(
            row.is_some(),
            id >= 7,
            "parcel {id} in the new primary: {row:?}"
        );
    }
}

/// A checkpoint whose per-table mark is past the journal's end (replay of
/// a table ran ahead while another table waited, then a power loss took
/// the tail): a new entry never gets a number the checkpoint calls done.
#[tokio::test]
async fn new_entries_are_numbered_past_every_mark_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=3, JournalOptions::default()).await;
    let text = "1\nparcels 5\ngen 7\n";
    let crc = octopus::journal::crc32(&[text.as_bytes()]);
    fs::write(
        dir.path().join("checkpoint"),
        format!("{text}crc {crc:08x}\n"),
    )
    .unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 0, "2 and 3 are done by the table's mark");
    let seq = journal.append(Parcel::SCHEMA, &parcel(9)).await.unwrap();
    assert_eq!(seq, 6);
    assert_eq!(journal.pending(), 1);
    journal.close().await.unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.pending(), 1, "still pending after a reopen");
    journal.close().await.unwrap();
}

/// Zeros over entries synced long ago, in the middle of the last segment,
/// with later group commits after them: an error naming the offset, never
/// a silent cut of acknowledged entries.
#[tokio::test]
async fn damage_followed_by_later_group_commits_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 1..=6, JournalOptions::default()).await;
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    bytes[starts[1]..starts[3]].fill(0);
    fs::write(&segment, &bytes).unwrap();
    match Journal::open(dir.path(), JournalOptions::default()) {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("at byte offset {}", starts[1])),
                "{text}"
            );
        }
        Ok(j) => panic!(
            "opened with {} pending: acknowledged entries were cut",
            j.pending()
        ),
    }
    assert_eq!(fs::read(&segment).unwrap(), bytes, "nothing cut");
}
