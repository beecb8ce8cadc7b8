//! The servers the application processes use, each the test's own, and the
//! faults done to them, each real: MySQL refused and blackholed through
//! the fault proxy, the MariaDB server SIGKILLed and restarted on its data
//! directory, switched to read-only and back; memcached SIGKILLed and
//! restarted, and blackholed through its proxy; the journals' filesystems
//! filled up while MySQL refuses connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;

use octopus_test_support::memcache::OwnMemcached;
use octopus_test_support::mysql::{APP_USER, PrivateMariadb};

/// How long a fault lasts, and how long everything then runs healthy.
const DOWN: Duration = Duration::from_millis(700);
const UP: Duration = Duration::from_millis(400);

/// The faults, in the order the schedule takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    MysqlRefused,
    MysqlBlackholed,
    MariadbKilled,
    ReadOnly,
    MemcachedKilled,
    MemcachedBlackholed,
    DiskFull,
    AppKilled,
}

pub const SCHEDULE: [Fault; 8] = [
    Fault::MysqlRefused,
    Fault::MemcachedBlackholed,
    Fault::MariadbKilled,
    Fault::ReadOnly,
    Fault::AppKilled,
    Fault::MysqlBlackholed,
    Fault::MemcachedKilled,
    Fault::DiskFull,
];

/// A small tmpfs for one process's journal; unmounted on drop.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `megabytes` in size: the journal's segments and its dead letters
    /// (which grow with the run) must fit when the disk is not full.
    fn mount(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("this test runs `mount` (util-linux)");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs at {} for a journal and needs root (or CAP_SYS_ADMIN): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path, _dir: dir }
    }

    /// Fills the filesystem with a file, up to its last byte: blocks
    /// allocated by `fallocate` in halving steps, then written in halving
    /// chunks.
    fn fill(&self, megabytes: u64) {
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let (mut offset, mut len) = (0u64, megabytes << 20);
        while len >= 64 * 1024 {
            let allocated = Command::new("fallocate")
                .args(["-o", &offset.to_string(), "-l", &len.to_string()])
                .arg(self.filler())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("this test runs `fallocate` (util-linux)")
                .success();
            if allocated {
                offset += len;
            } else {
                len /= 2;
            }
        }
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset)).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut size = chunk.len();
        while size > 0 {
            match std::io::Write::write(&mut f, &chunk[..size]) {
                Ok(0) | Err(_) => size /= 2,
                Ok(_) => {}
            }
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The servers and the disks, and the faults done so far.
pub struct World {
    pub mariadb: PrivateMariadb,
    pub mysql: FaultProxy,
    memcached: OwnMemcached,
    pub memcache: FaultProxy,
    pub disks: Vec<SmallDisk>,
    disk_megabytes: u64,
    pub done: BTreeMap<Fault, usize>,
}

impl World {
    /// A MariaDB and a memcached of the test's own, each behind a fault
    /// proxy, and one small disk per process.
    pub async fn start(processes: usize, disk_megabytes: u64) -> World {
        let mariadb = PrivateMariadb::start().await;
        let mysql = FaultProxy::start(([127, 0, 0, 1], mariadb.port).into())
            .await
            .unwrap();
        let memcached = OwnMemcached::start().await;
        let memcache = FaultProxy::start(([127, 0, 0, 1], memcached.port).into())
            .await
            .unwrap();
        World {
            mariadb,
            mysql,
            memcached,
            memcache,
            disks: (0..processes)
                .map(|_| SmallDisk::mount(disk_megabytes))
                .collect(),
            disk_megabytes,
            done: BTreeMap::new(),
        }
    }

    /// The URL the processes reach MySQL by (through the proxy).
    pub fn mysql_url(&self) -> String {
        let user = APP_USER;
        format!("mysql://{user}@{}/test?deadline_ms=400", self.mysql.addr())
    }

    pub fn memcache_url(&self) -> String {
        format!(
            "memcache://{}?timeout_ms=200&connect_timeout_ms=200",
            self.memcache.addr()
        )
    }

    /// Does `fault` (all but [`Fault::AppKilled`], which the caller does),
    /// waits, heals it, and lets everything run healthy a while; when it
    /// was healed, on the history's clock.
    pub async fn inflict(&mut self, fault: Fault) -> u64 {
        *self.done.entry(fault).or_default() += 1;
        match fault {
            Fault::MysqlRefused => {
                self.mysql.set(Mode::Reset).await;
                self.mysql.set(Mode::Refuse).await;
                tokio::time::sleep(DOWN).await;
                self.mysql.set(Mode::Pass).await;
            }
            Fault::MysqlBlackholed => {
                self.mysql.set(Mode::Blackhole).await;
                tokio::time::sleep(DOWN).await;
                self.mysql.set(Mode::Reset).await;
                self.mysql.set(Mode::Pass).await;
            }
            Fault::MariadbKilled => {
                self.mariadb.kill();
                tokio::time::sleep(DOWN).await;
                self.mariadb.restart().await;
            }
            Fault::ReadOnly => {
                self.read_only(true).await;
                tokio::time::sleep(DOWN).await;
                self.read_only(false).await;
            }
            Fault::MemcachedKilled => {
                self.memcached.stop();
                tokio::time::sleep(DOWN).await;
                self.memcached.restart().await;
            }
            Fault::MemcachedBlackholed => {
                self.memcache.set(Mode::Blackhole).await;
                tokio::time::sleep(DOWN).await;
                self.memcache.set(Mode::Reset).await;
                self.memcache.set(Mode::Pass).await;
            }
            Fault::DiskFull => {
                self.mysql.set(Mode::Reset).await;
                self.mysql.set(Mode::Refuse).await;
                for d in &self.disks {
                    d.fill(self.disk_megabytes);
                }
                tokio::time::sleep(DOWN).await;
                for d in &self.disks {
                    d.free();
                }
                self.mysql.set(Mode::Pass).await;
            }
            Fault::AppKilled => {}
        }
        let healed = super::now();
        tokio::time::sleep(UP).await;
        healed
    }

    async fn read_only(&self, on: bool) {
        let mut root = self.mariadb.root().await;
        root.query_drop(format!("SET GLOBAL read_only = {}", u8::from(on)))
            .await
            .unwrap();
        root.disconnect().await.unwrap();
    }

    /// Counts a fault the caller did (an application process killed).
    pub fn note(&mut self, fault: Fault) {
        *self.done.entry(fault).or_default() += 1;
    }

    /// MySQL refused (connections reset, new ones refused), or back.
    pub async fn cut_mysql(&mut self, cut: bool) {
        if cut {
            *self.done.entry(Fault::MysqlRefused).or_default() += 1;
            self.mysql.set(Mode::Reset).await;
            self.mysql.set(Mode::Refuse).await;
        } else {
            self.mysql.set(Mode::Pass).await;
        }
    }

    /// Every server healthy again.
    pub async fn heal(&mut self) {
        self.mysql.set(Mode::Pass).await;
        self.memcache.set(Mode::Pass).await;
    }

    /// `fault=count` for each fault done.
    pub fn by_kind(&self) -> String {
        self.done
            .iter()
            .map(|(f, n)| format!("{f:?}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn outages(&self) -> usize {
        self.done.values().sum()
    }

    /// The journal directory of process `n`, on its small disk.
    pub fn journal(&self, n: usize) -> PathBuf {
        self.disks[n].path.join("journal")
    }
}
