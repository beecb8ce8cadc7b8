//! A PostgreSQL server of the test's own: its own data directory, port and
//! socket directory, so a test can stop it, start it again or change its
//! settings without touching the shared server. Stopped (by its pid) when
//! dropped; its data directory goes with it.
//!
//! The binaries (`initdb`, `pg_ctl` and `postgres`, all from one directory,
//! so of one version) come from the directory `OCTOPUS_POSTGRES_BIN`, else
//! the first directory on `PATH` that holds all three, else the newest
//! `/usr/lib/postgresql/<version>/bin` (where Debian puts them). A missing
//! one fails the test with a message saying how to install it; nothing is
//! skipped.
//!
//! PostgreSQL refuses to run as root: a test running as root runs the
//! binaries as the OS user `postgres` (which the `postgresql` package
//! creates), and gives that user the server's directory.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_postgres::Client;

use super::{CONNECT_WITHIN, connect, describe};
use crate::poll_until;

/// Where Debian's packages put each version's binaries.
const PACKAGED: &str = "/usr/lib/postgresql";

/// The binaries a server needs, from one directory.
const BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The OS user the binaries run as when this process runs as root.
const OS_USER: &str = "postgres";

/// How long the server may take to start or stop.
const WITHIN: Duration = Duration::from_secs(60);

/// How long one connection attempt may take while waiting for the server.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(2);

/// A running (or stopped, see [`stop`](Self::stop)) private server: user
/// `postgres`, trust authentication, database `test`.
pub struct PrivatePostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    bin: PathBuf,
    /// The uid and gid the binaries run as, when this process runs as root.
    owner: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Creates a data directory (`initdb`), starts `postgres` on a free port
    /// of 127.0.0.1 and waits (polling, 60 s at most) until it answers;
    /// creates database `test`.
    pub async fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("octopus-postgres")
            .tempdir()
            .unwrap();
        let owner = is_root(dir.path()).then(server_user);
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).unwrap();
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), &socket] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("giving {} to {OS_USER}: {e}", path.display()));
            }
        }
        init(&bin, dir.path(), owner);
        let port = free_port();
        let child = spawn(&bin, dir.path(), port, owner);
        let mut pg = PrivatePostgres {
            port,
            child,
            bin,
            owner,
            dir,
        };
        pg.wait_until_it_answers().await;
        let url = pg.url_of("postgres");
        let admin = connect(&url, CONNECT_WITHIN).await.unwrap();
        admin
            .batch_execute("CREATE DATABASE test")
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE test on port {port}: {}", describe(&e)));
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/test`, a store URL (add
    /// parameters with `?`).
    pub fn url(&self) -> String {
        self.url_of("test")
    }

    /// `127.0.0.1:<port>` (what a fault proxy in front of it forwards to).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The postmaster's process id (after [`stop`](Self::stop), that of the
    /// process that was stopped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection to database `test` as `postgres`, its connection task
    /// spawned on the current runtime.
    pub async fn client(&self) -> Client {
        let url = self.url();
        connect(&url, CONNECT_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} does not answer: {e}"))
    }

    /// Stops the server at once (an immediate shutdown, `pg_ctl stop -m
    /// immediate`: every session ends, nothing is checkpointed, the next
    /// start recovers from the WAL as after a crash) and waits (60 s at
    /// most) until the postmaster and its processes are gone and the port
    /// refuses connections. Nothing to stop if it is not running.
    pub async fn stop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.signal_quit()
                .unwrap_or_else(|e| panic!("stopping postgres (pid {}): {e}", self.pid()));
        }
        let port = self.port;
        let stopped = poll_until(WITHIN, async || {
            match self.child.try_wait() {
                Ok(Some(_)) => {}
                Ok(None) => return Err("the postmaster still runs".to_owned()),
                Err(e) => return Err(format!("waiting for the postmaster: {e}")),
            }
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => Err(format!("port {port} still accepts connections")),
                Err(_) => Ok(()),
            }
        })
        .await;
        if let Err(seen) = stopped {
            panic!(
                "postgres (pid {}) did not stop within {WITHIN:?} ({seen}):\n{}",
                self.pid(),
                self.log()
            );
        }
    }

    /// Starts the stopped server again on its data directory and port, and
    /// waits (60 s at most) until it answers.
    pub async fn start_again(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "postgres (pid {}) still runs: stop it first",
            self.pid()
        );
        self.child = spawn(&self.bin, self.dir.path(), self.port, self.owner);
        self.wait_until_it_answers().await;
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Asks the postmaster for an immediate shutdown (SIGQUIT, by its pid).
    fn signal_quit(&self) -> Result<(), String> {
        let mut pg_ctl = command(&self.bin, "pg_ctl", self.dir.path(), self.owner);
        pg_ctl.args(["kill", "QUIT", &self.pid().to_string()]);
        let out = pg_ctl
            .output()
            .map_err(|e| format!("running pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl kill QUIT failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Polls (60 s at most) until the server answers; panics with its log if
    /// it exits or never does.
    async fn wait_until_it_answers(&mut self) {
        let url = self.url_of("postgres");
        let answered = poll_until(WITHIN, async || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            connect(&url, ATTEMPT_WITHIN).await.map(drop)
        })
        .await;
        if let Err(seen) = answered {
            panic!(
                "postgres on port {} did not answer within {WITHIN:?} ({seen}):\n{}",
                self.port,
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // An immediate shutdown ends the server's processes too (a SIGKILL
        // would leave them to notice it); SIGKILL if that cannot be asked.
        if self.signal_quit().is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `initdb` for user `postgres` with trust authentication into `data`
/// under `dir`.
fn init(bin: &Path, dir: &Path, owner: Option<(u32, u32)>) {
    let mut initdb = command(bin, "initdb", dir, owner);
    initdb
        .arg("-D")
        .arg(dir.join("data"))
        .args(["--username=postgres", "--auth=trust"])
        .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
    let out = initdb
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.join("initdb").display()));
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `postgres` on the data directory under `dir`, on 127.0.0.1:`port`
/// and a socket in `dir/socket`, logging to `dir/server.log`.
fn spawn(bin: &Path, dir: &Path, port: u16, owner: Option<(u32, u32)>) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut server = command(bin, "postgres", dir, owner);
    server
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir.join("socket"))
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Small: the server holds a few rows and starts in a second.
        .args(["-c", "shared_buffers=16MB", "-c", "max_wal_size=64MB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    server
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.join("postgres").display()))
}

/// Binary `name` of `bin`, run in `dir`, as `owner` if given.
fn command(bin: &Path, name: &str, dir: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(name));
    command.current_dir(dir);
    if let Some((uid, gid)) = owner {
        command.gid(gid).uid(uid);
    }
    command
}

/// The directory of the binaries (see the module's doc); panics saying how
/// to get them.
fn bin_dir() -> PathBuf {
    let has_all = |dir: &Path| BINARIES.iter().all(|name| dir.join(name).is_file());
    if let Some(dir) = std::env::var_os("OCTOPUS_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_all(&dir),
            "OCTOPUS_POSTGRES_BIN ({}) lacks one of {BINARIES:?}",
            dir.display()
        );
        return dir;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).find(|dir| has_all(dir));
    on_path
        .or_else(|| newest_packaged(has_all))
        .unwrap_or_else(|| {
            panic!(
                "no directory with {BINARIES:?} (looked in PATH and {PACKAGED}/*/bin): these \
                 tests run a PostgreSQL server of their own. Install it (apt-get install \
                 postgresql; ./scripts/services.sh does) or set OCTOPUS_POSTGRES_BIN to the \
                 directory of the binaries."
            )
        })
}

/// `PACKAGED/<version>/bin` of the newest version that has all binaries.
fn newest_packaged(has_all: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let versions = std::fs::read_dir(PACKAGED).ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .max()
        .map(|(_, bin)| bin)
}

/// The uid and gid of [`OS_USER`]; panics saying how to get that user.
fn server_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, OS_USER])
            .output()
            .unwrap_or_else(|e| panic!("running id: {e}"));
        assert!(
            out.status.success(),
            "this test runs as root, which PostgreSQL refuses, so it runs the server as \
             OS user `{OS_USER}`, which does not exist here (apt-get install postgresql \
             creates it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("`id {flag} {OS_USER}` said `{text}`: {e}"))
    };
    (id("-u"), id("-g"))
}

/// Whether this process runs as root (the binaries then run as
/// [`OS_USER`]): the owner of a directory it just created.
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
