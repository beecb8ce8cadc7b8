//! A MariaDB server of the test's own: its own data directory, port and
//! socket, so a test can change global settings (`read_only`) or hold locks
//! without touching the shared server. Stopped (by its pid) when dropped.
//!
//! A missing `mariadbd` or `mariadb-install-db` fails the test with a message
//! saying how to install them; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::poll_until;

/// Where the binaries may be, besides `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/bin"];

/// The user every test connects as: all privileges on database `test`, no
/// administrative ones, so `read_only` applies to it (it never applies to
/// an account with `READ_ONLY ADMIN`, root included).
pub const APP_USER: &str = "app";

/// A running private server.
pub struct PrivateMariadb {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateMariadb {
    /// Installs a data directory, starts `mariadbd` on a free port and waits
    /// (polling, 60 s at most) until it answers; creates database `test`
    /// and user [`APP_USER`].
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("octopus-mariadb")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        // A server deletes every `#sql*` file in its tmpdir when it starts:
        // with the default (/tmp) it would delete the temporary tables of
        // every other server using /tmp, the shared one included.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let tmpdir = format!("--tmpdir={}", tmp.display());
        let mut install = Command::new(binary("mariadb-install-db", "OCTOPUS_MARIADB_INSTALL_DB"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(&tmpdir)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(small_server());
        if is_root(dir.path()) {
            install.arg("--user=root");
        }
        let out = install.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = spawn(dir.path(), port);
        let mut db = PrivateMariadb { port, child, dir };
        db.wait_until_it_answers().await;
        let mut root = db.root().await;
        root.query_drop(format!(
            "CREATE DATABASE test; CREATE USER {APP_USER}@'%'; \
             GRANT ALL ON test.* TO {APP_USER}@'%'"
        ))
        .await
        .unwrap();
        root.disconnect().await.unwrap();
        db
    }

    /// Kills the server (SIGKILL: no shutdown, what a crash leaves) and
    /// waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed server again on its data directory and port, and
    /// waits until it answers (InnoDB recovers what the crash left).
    pub async fn restart(&mut self) {
        self.child = spawn(self.dir.path(), self.port);
        self.wait_until_it_answers().await;
    }

    /// A store URL for [`APP_USER`] on database `test`, with `params`.
    pub fn app_url(&self, params: &str) -> String {
        format!("mysql://{APP_USER}@127.0.0.1:{}/test?{params}", self.port)
    }

    /// A connection as root (for global settings and status).
    pub async fn root(&self) -> mysql_async::Conn {
        let url = format!(
            "mysql://root@127.0.0.1:{}/mysql?prefer_socket=false",
            self.port
        );
        mysql_async::Conn::from_url(url).await.unwrap()
    }

    /// A connection as [`APP_USER`] on database `test`.
    pub async fn app(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.app_url("prefer_socket=false"))
            .await
            .unwrap()
    }

    /// Polls (60 s at most) until the server answers; panics with its error
    /// log if it exits or never does.
    async fn wait_until_it_answers(&mut self) {
        let url = format!(
            "mysql://root@127.0.0.1:{}/mysql?prefer_socket=false",
            self.port
        );
        let answered = poll_until(Duration::from_secs(60), async || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mariadbd exited ({status}):\n{}", self.error_log());
            }
            let attempt = mysql_async::Conn::from_url(url.as_str());
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(conn)) => {
                    let _ = conn.disconnect().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 2 s".to_owned()),
            }
        })
        .await;
        if let Err(seen) = answered {
            panic!(
                "mariadbd on port {} did not answer within 60 s ({seen}):\n{}",
                self.port,
                self.error_log()
            );
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        // Killed by its pid; the data directory goes with the TempDir.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mariadbd` on the data directory under `dir`, on `port`.
fn spawn(dir: &Path, port: u16) -> Child {
    let mut server = Command::new(binary("mariadbd", "OCTOPUS_MARIADBD"));
    server
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
        .args(small_server())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root(dir) {
        server.arg("--user=root");
    }
    server.spawn().expect("start mariadbd")
}

/// Small buffers: the server holds a few rows and starts in a second.
fn small_server() -> [&'static str; 2] {
    ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"]
}

/// `name` from the environment variable `var`, `PATH` or the usual
/// directories; panics saying how to get it.
fn binary(name: &str, var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(var) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found (looked in PATH and {SBIN:?}): these tests run a MariaDB \
             server of their own. Install mariadb-server (./scripts/services.sh does) or \
             set {var} to the binary."
        )
    })
}

/// Whether this process runs as root (mariadbd then needs `--user=root`):
/// the owner of a directory it just created.
fn is_root(created: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(created).unwrap().uid() == 0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
