//! The journal on disk: entries survive reopening, a torn final entry is cut
//! off, damage in the middle is an error naming segment and offset, and a
//! journal can be open only once.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use octopus::journal::{Journal, JournalOptions, Pending};
use octopus::{Error, Key, Model};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "events")]
struct Event {
    #[octopus(key)]
    id: u64,
    what: String,
    blob: Vec<u8>,
    score: f64,
}

fn event(id: u64, what: &str) -> Event {
    Event {
        id,
        what: what.into(),
        blob: vec![0, 1, 254, 255],
        score: f64::NAN,
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

async fn write_three(dir: &Path) {
    let j = Journal::open(dir, JournalOptions::default()).unwrap();
    for (id, what) in [(1, "a"), (2, "b"), (3, "c")] {
        j.append(
            Event::SCHEMA,
            &octopus::Write::Insert(event(id, what).to_record().unwrap()),
        )
        .await
        .unwrap();
    }
    j.append(
        Event::SCHEMA,
        &octopus::Write::Delete {
            key: Key::UInt(2),
            expected_version: None,
        },
    )
    .await
    .unwrap();
}

fn pending(j: &Journal, id: u64) -> Option<Pending> {
    j.lookup(Event::SCHEMA, &Key::UInt(id)).unwrap()
}

#[tokio::test]
async fn entries_survive_reopening_as_readable_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_three(dir.path()).await;
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(j.pending(), 4);
    let Some(Pending::Put(r)) = pending(&j, 1) else {
        panic!("entry 1 lost")
    };
    let back = Event::from_record(r).unwrap();
    assert_eq!(
        (back.id, back.what.as_str(), back.blob.as_slice()),
        (1, "a", &[0, 1, 254, 255][..])
    );
    assert!(back.score.is_nan());
    assert_eq!(
        pending(&j, 2),
        Some(Pending::Deleted),
        "the latest write of a key wins"
    );
    assert_eq!(pending(&j, 9), None);

    let text = fs::read_to_string(&segments(dir.path())[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["table"], "events");
    assert_eq!(first["op"], "create");
    assert_eq!(first["key"], 1);
    assert_eq!(first["record"]["what"], "a");
    assert_eq!(first["record"]["blob"], "0001feff");
    assert_eq!(first["record"]["score"], "NaN");
    assert_eq!(
        first["fingerprint"],
        format!("{:016x}", Event::SCHEMA.fingerprint())
    );
    assert!(first["crc"].as_str().unwrap().len() == 8);
    let last: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(
        (last["seq"].as_u64(), last["op"].as_str()),
        (Some(4), Some("delete"))
    );
}

#[tokio::test]
async fn a_torn_final_entry_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    write_three(dir.path()).await;
    let seg = segments(dir.path()).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    // A crash mid-append: half a line, no newline.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(br#"{"seq":5,"time":1,"table":"events","op":"put","ke"#)
        .unwrap();
    drop(f);

    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(j.pending(), 4);
    let (path, offset) = j.torn_tail().expect("the torn entry was reported");
    assert_eq!((path, offset), (seg.as_path(), good_len));
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        good_len,
        "the torn tail is gone"
    );
    // Appending continues after the last whole entry.
    let seq = j
        .append(
            Event::SCHEMA,
            &octopus::Write::Insert(event(5, "e").to_record().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(seq, 5);
    drop(j);
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(j.torn_tail().is_none());
    assert_eq!(j.pending(), 5);
}

#[tokio::test]
async fn a_damaged_final_line_with_its_newline_is_also_torn() {
    let dir = tempfile::tempdir().unwrap();
    write_three(dir.path()).await;
    let seg = segments(dir.path()).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"\0\0\0\0\0\0\n").unwrap();
    drop(f);
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(j.torn_tail().is_some());
    assert_eq!(j.pending(), 4);
}

#[tokio::test]
async fn a_damaged_entry_in_the_middle_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_three(dir.path()).await;
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let second_line_at = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    // Flip one character inside the second entry's record.
    let i = second_line_at + 60;
    bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
    fs::write(&seg, &bytes).unwrap();

    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    match &err {
        Error::Journal {
            path,
            offset,
            reason,
            ..
        } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, Some(second_line_at as u64));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected a journal error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("at byte offset {second_line_at}"))
    );
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing was cut or skipped");
}

#[tokio::test]
async fn a_journal_opens_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Journal { reason, .. } if reason.contains("open in another process")),
        "{err:?}"
    );
    drop(first);
    Journal::open(dir.path(), JournalOptions::default()).unwrap();
}

#[tokio::test]
async fn segments_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalOptions::default().segment_bytes(1000)).unwrap();
    for id in 0..30 {
        j.append(
            Event::SCHEMA,
            &octopus::Write::Insert(event(id, "x").to_record().unwrap()),
        )
        .await
        .unwrap();
    }
    let segs = segments(dir.path());
    assert!(segs.len() > 3, "{segs:?}");
    drop(j);
    let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(j.pending(), 30);
    assert!(matches!(pending(&j, 29), Some(Pending::Put(_))));
}
