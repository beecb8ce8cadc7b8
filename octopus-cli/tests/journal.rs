//! `octopus journal …`, the built binary, on real journals: the status of
//! a journal an application (this test process) has open, without taking
//! its lock; its pending entries by table and key; damage found by
//! `verify` with its file and offset; dead letters listed, exported, and
//! requeued only once the journal's owner has closed it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, MemoryStore, Model, Plan, Store, Write};
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "orders")]
struct Order {
    #[octopus(key)]
    id: u64,
    item: String,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "items")]
struct Item {
    #[octopus(key)]
    sku: String,
    stock: i64,
}

fn order(id: u64) -> Write {
    let o = Order {
        id,
        item: format!("item {id}"),
    };
    Write::Insert(o.to_record().unwrap())
}

fn octopus(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_octopus"))
        .arg("journal")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run the octopus binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

/// A journal with orders 1 and 2 and item `a` pending, open in this
/// process.
async fn pending_journal(dir: &Path) -> Journal {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    for id in [1, 2] {
        journal.append(Order::SCHEMA, &order(id)).await.unwrap();
    }
    let item = Item {
        sku: "a".into(),
        stock: 3,
    };
    let write = Write::Insert(item.to_record().unwrap());
    journal.append(Item::SCHEMA, &write).await.unwrap();
    journal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_inspect_read_a_journal_its_application_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = pending_journal(dir.path()).await;

    let out = octopus(dir.path(), &["status"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let pid = std::process::id();
    for line in [
        format!("open in process {pid}"),
        "pending: 3 (items 1, orders 2)".to_owned(),
        "dead letters: 0".to_owned(),
        "damage: none".to_owned(),
    ] {
        assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
    }
    let status = json(&octopus(dir.path(), &["status", "--json"]));
    assert_eq!(status["pending"], 3, "{status}");
    assert_eq!(status["pending_by_table"]["orders"], 2, "{status}");
    assert_eq!(status["holder"], pid, "{status}");

    let out = octopus(dir.path(), &["inspect", "--table", "orders", "--key", "2"]);
    let lines: Vec<Json> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (
            &lines[0]["key"],
            &lines[0]["op"],
            &lines[0]["record"]["item"]
        ),
        (&Json::from(2), &Json::from("create"), &Json::from("item 2"))
    );
    // The journal is untouched: its owner appends on.
    journal.append(Order::SCHEMA, &order(3)).await.unwrap();
    assert_eq!(journal.pending(), 4);
    journal.close().await.unwrap();
    let status = json(&octopus(dir.path(), &["--json", "status"]));
    assert_eq!(
        (&status["pending"], &status["holder"]),
        (&Json::from(4), &Json::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_damaged_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    pending_journal(dir.path()).await.close().await.unwrap();
    assert!(octopus(dir.path(), &["verify"]).status.success());

    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("journal-"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let second_line = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    bytes[second_line + 10] ^= 0x20;
    std::fs::write(&segment, bytes).unwrap();

    let out = octopus(dir.path(), &["verify"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let want = format!("{} at byte offset {second_line}", segment.display());
    assert!(stdout.contains(&want), "{want:?} in:\n{stdout}");
    let report = json(&octopus(dir.path(), &["verify", "--json"]));
    assert_eq!(report["ok"], false, "{report}");
    // `status` reports it too, but does not fail on it.
    assert!(octopus(dir.path(), &["status"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_exported_and_requeued_once_the_journal_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = pending_journal(dir.path()).await;
    // The primary already holds order 1: its journaled create is refused
    // at replay.
    let primary = Arc::new(MemoryStore::new());
    let held = Order {
        id: 1,
        item: "bought elsewhere".into(),
    };
    primary
        .insert(Order::SCHEMA, &held.to_record().unwrap())
        .await
        .unwrap();
    let plan = Arc::new(
        Plan::builder(primary)
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _orders: Dao<Order> = Dao::open(plan.clone()).await.unwrap();
    let _items: Dao<Item> = Dao::open(plan.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .expect("the journal drains");

    let out = octopus(dir.path(), &["dead-letters", "list"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("#1 orders 1 create: "), "{stdout}");
    assert!(stdout.contains("1 dead letter(s)"), "{stdout}");
    let out = octopus(dir.path(), &["dead-letters", "export", "--table", "items"]);
    assert_eq!(text(&out.stdout), "", "no dead letter of items");
    let out = octopus(dir.path(), &["dead-letters", "export"]);
    let letter: Json = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(letter["entry"]["key"], 1, "{letter}");

    // Requeueing appends: not while the application has the journal open.
    let out = octopus(dir.path(), &["dead-letters", "requeue"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let pid = std::process::id();
    assert!(
        stderr.contains(&format!("open in process {pid}")),
        "{stderr}"
    );
    plan.close().await.unwrap();

    let out = octopus(dir.path(), &["dead-letters", "requeue", "--key", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("requeued 1 dead letter(s)"));
    let status = json(&octopus(dir.path(), &["status", "--json"]));
    assert_eq!(
        (&status["pending"], &status["dead_letters"]),
        (&Json::from(1), &Json::from(0)),
        "{status}"
    );
}

#[test]
fn a_config_without_a_file_journal_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("octopus.toml");
    std::fs::write(&config, "[default]\nprimary = \"sqlite::memory:\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_octopus"))
        .arg("--config")
        .arg(&config)
        .args(["journal", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("the config names no file:// fallback; give the journal with --dir"),
        "{}",
        text(&out.stderr)
    );
}
