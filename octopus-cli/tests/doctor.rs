//! `octopus doctor`, the built binary, against real servers: every server
//! of a config answers (exit 0, each with its version); one that does not
//! is named (exit 1), in lines and in JSON; a journal whose lock another
//! process holds is named; a bad config is exit 2 naming the key; a
//! password never shows.

use std::path::Path;
use std::process::{Command, Output};

use octopus::journal::{Journal, JournalOptions};
use octopus_test_support::memcache::memcache_url;
use octopus_test_support::mysql::mysql_url;
use octopus_test_support::nats::OwnNats;
use octopus_test_support::postgres::postgres_url;

fn doctor(config: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_octopus"));
    cmd.arg("--config").arg(config).arg("doctor");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run the octopus binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nothing listens on.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("octopus.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_answers_and_says_what_it_is() {
    let nats = OwnNats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[default]\nprimary = \"{}\"\ncaches = [{{ url = \"memory://?capacity=100\" }}, {{ url = \"{}\" }}]\n\
             fallback = \"file://{}\"\n[models.sessions]\nprimary = \"{}\"\nfallback = \"{}?stream=doctor\"\n",
            mysql_url(),
            memcache_url(),
            dir.path().join("journal").display(),
            postgres_url(),
            nats.url(),
        ),
    );
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for answer in [
        "MariaDB",
        "PostgreSQL",
        "memcached 1.",
        "in-process",
        "journal directory writable, lock free",
        "with JetStream",
    ] {
        assert!(stdout.contains(answer), "no `{answer}` in:\n{stdout}");
    }
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        6,
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_and_the_exit_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("memcache://127.0.0.1:{}", refused_port());
    let config = write_config(
        dir.path(),
        &format!(
            "[default]\nprimary = \"{}\"\ncaches = [{{ url = \"{dead}\" }}]\n",
            mysql_url()
        ),
    );
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 of 2 checks failed") && stderr.contains(&format!("cache {dead}")),
        "{stderr}"
    );
    let json = doctor(&config, true);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let failed: Vec<_> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(failed[0]["url"], dead.as_str());
    assert!(
        failed[0]["error"].as_str().unwrap().contains("unavailable"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_another_process_holds_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    let _held = Journal::open(&journal_dir, JournalOptions::default()).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[default]\nprimary = \"sqlite://{}\"\nfallback = \"file://{}\"\n",
            dir.path().join("app.db").display(),
            journal_dir.display()
        ),
    );
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL fallback") && stdout.contains("open in another process"),
        "{stdout}"
    );
}

#[test]
fn a_bad_config_is_exit_2_naming_the_key_and_a_password_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[default]\nprimry = \"sqlite://x.db\"\n");
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("primry"),
        "{}",
        text(&out.stderr)
    );

    let config = write_config(
        dir.path(),
        &format!(
            "[default]\nprimary = \"mysql://root:s3cret-pw@127.0.0.1:{}/test?deadline_ms=300\"\n",
            refused_port()
        ),
    );
    for json in [false, true] {
        let out = doctor(&config, json);
        assert_eq!(out.status.code(), Some(1));
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!all.contains("s3cret-pw"), "the password shows:\n{all}");
        assert!(all.contains("unavailable"), "{all}");
    }
}
