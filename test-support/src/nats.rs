//! nats-server processes of a test's own, with JetStream: own port, own
//! store directory, `sync_interval: always` (every acknowledged message is
//! on disk), so a test can kill and restart one without touching the shared
//! server on :4222.
//!
//! The server binary is `OCTOPUS_NATS_SERVER`, else the one
//! `./scripts/services.sh` installs under `.services/nats/bin/`, else
//! `nats-server` on the `PATH`. It must be 2.10 or later (the first with
//! `sync_interval`); an older one fails the test saying how to get one.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::eventually;

/// A nats-server of the test's own on a free port of 127.0.0.1. Killed when
/// dropped; its store directory is removed with it.
pub struct OwnNats {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The server binary to run (see the module docs).
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("OCTOPUS_NATS_SERVER") {
        return path.into();
    }
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.services/nats/bin/nats-server");
    if installed.exists() {
        return installed;
    }
    "nats-server".into()
}

/// `(major, minor)` of the server binary, or a panic saying what is wrong.
fn server_version(binary: &PathBuf) -> (u32, u32) {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install it with ./scripts/services.sh",
                binary.display()
            )
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl OwnNats {
    /// Starts nats-server with JetStream on a free port and waits until it
    /// accepts connections. Panics, saying how to get one, if there is no
    /// nats-server 2.10 or later to run.
    pub async fn start() -> Self {
        let binary = server_binary();
        let (major, minor) = server_version(&binary);
        assert!(
            (major, minor) >= (2, 10),
            "{} is nats-server {major}.{minor}; the tests need 2.10 or later \
             (sync_interval): run ./scripts/services.sh or set OCTOPUS_NATS_SERVER",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            dir.path().join("store").display()
        );
        std::fs::write(dir.path().join("nats.conf"), config).unwrap();
        let mut own = OwnNats {
            port,
            dir,
            child: None,
        };
        own.restart().await;
        own
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process again on the same port and store (what it had
    /// acknowledged is still there) and waits, 5 s at most, until it
    /// accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let binary = server_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", binary.display()));
        self.child = Some(child);
        let what = format!("nats-server to listen on port {}", self.port);
        eventually(&what, Duration::from_secs(5), async || {
            TcpStream::connect(("127.0.0.1", self.port)).map(drop)
        })
        .await;
    }

    /// Kills the process (SIGKILL) and waits for it to exit; nothing if it
    /// is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}
