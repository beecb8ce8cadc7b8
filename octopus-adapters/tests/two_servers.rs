//! Two servers, each with its own journal, over one MariaDB: one is
//! partitioned from MySQL (by a fault proxy) while the other writes the same
//! keys. After replay, no acknowledged versioned write of either may be
//! overwritten by an older chain, and every refused entry is a dead letter.
//!
//! The servers are two OS processes: the test binary runs itself twice as
//! [`child_server`], driven over stdin and stdout ("warm", "work", "drain",
//! "exit"; each answered by "ok <command>"). A reaches MySQL through the
//! proxy, B directly. 30 accounts are seeded at version 1 (balance 0): 10 hot
//! keys both write, 10 only A writes, 10 only B writes. Both warm their
//! caches; A is partitioned; both run 8 tasks of read-modify-update, each
//! balance unique to its (server, task, operation), recording every
//! acknowledged write with the version it made and the balance it read. A's
//! writes are journaled, B's go to MySQL. The partition heals, A's journal
//! drains, and both report their histories and dead letters.
//!
//! The oracle, per key, over the seed and every acknowledged write that is
//! not a dead letter (the survivors):
//!
//! 1. at most one survivor per version: two would mean that one server's
//!    write was overwritten by the other's chain;
//! 2. every survivor above version 1 read the survivor one version below:
//!    no write was applied over a row it never saw (a refused chain's later
//!    entries must not apply over the other server's newer write);
//! 3. MySQL holds the highest survivor, and none is above it: nothing
//!    acknowledged is lost, every journaled write is applied or a dead letter;
//! 4. every dead letter is a precondition failure of a journaled write of
//!    A on a hot key; the hot keys produced some, and A-only keys had
//!    journaled writes applied.
#![cfg(feature = "mysql")]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, CachePolicy, Dao, Error, MemoryStore, Model, Plan};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::{Instant, timeout, timeout_at};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

const HOT: std::ops::Range<u64> = 0..10;
const A_ONLY: std::ops::Range<u64> = 10..20;
const B_ONLY: std::ops::Range<u64> = 20..30;
const TASKS: u64 = 8;
const OPS: u64 = 200;
/// Small, so a key's entries span several batches, as in a long outage.
const REPLAY_BATCH: usize = 50;
const ROLE: &str = "OCTOPUS_TWO_SERVERS_ROLE";
const URL: &str = "OCTOPUS_TWO_SERVERS_URL";
const JOURNAL: &str = "OCTOPUS_TWO_SERVERS_JOURNAL";
const RESULTS: &str = "OCTOPUS_TWO_SERVERS_RESULTS";
/// Starts every protocol line a child prints.
const PREFIX: &str = "two-servers>";

/// Entry point of the child processes (servers A and B) that
/// `two_servers_one_partitioned_keep_every_acknowledged_write` spawns, not a
/// test of its own: without `OCTOPUS_TWO_SERVERS_ROLE` it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_server() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{role}: no {name}"));
    let options = JournalOptions::default().replay_batch(REPLAY_BATCH);
    let journal = Journal::open(env(JOURNAL), options).expect("the child opens its journal");
    let store = Arc::new(MysqlStore::new(&env(URL)).expect("the child's MySQL URL"));
    let breaker = BreakerOptions {
        window: 6,
        minimum_calls: 3,
        open_wait: Duration::from_millis(300),
        half_open_calls: 2,
        ..BreakerOptions::default()
    };
    let plan = Plan::builder(store)
        .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
        .breaker(breaker)
        .journal(journal.clone())
        .build();
    let plan = Arc::new(plan.expect("the child's plan builds"));
    let accounts: Dao<Account> = Dao::open(plan.clone()).await.expect("the child opens");
    let (number, keys): (u64, Vec<u64>) = match role.as_str() {
        "A" => (1, HOT.chain(A_ONLY).collect()),
        _ => (2, HOT.chain(B_ONLY).collect()),
    };
    let (mut history, mut commands) = (Vec::new(), lines_of(std::io::stdin()));
    println!("{PREFIX} ok ready");
    while let Some(command) = commands.recv().await {
        let answer = match command.trim() {
            "warm" => {
                for &key in &keys {
                    accounts.read(key).await.expect("warm read");
                }
                "warm".to_owned()
            }
            "work" => {
                history = workload(&accounts, number, &keys).await;
                format!("work {}", history.len())
            }
            "drain" => {
                if timeout(Duration::from_secs(60), plan.drained())
                    .await
                    .is_err()
                {
                    println!("{PREFIX} err drain: {:?}", plan.stats().fallback);
                    continue;
                }
                history.extend(dead_letters(&journal));
                std::fs::write(env(RESULTS), history.join("\n") + "\n").expect("results written");
                format!("drain {:?}", plan.stats().fallback)
            }
            "exit" => break,
            other => panic!("{role}: unknown command {other:?}"),
        };
        println!("{PREFIX} ok {answer}");
    }
    plan.close().await.expect("the child's plan closes");
    println!("{PREFIX} ok exit");
}

/// The lines of `input`, read by a thread (tokio's `io-std` and `process`
/// are not enabled here); the channel closes at the end of the input.
fn lines_of(input: impl Read + Send + 'static) -> UnboundedReceiver<String> {
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(input).lines() {
            if line.map(|l| tx.send(l)).is_err() {
                break;
            }
        }
    });
    rx
}

/// `TASKS` concurrent tasks of `OPS` read-modify-updates each over `keys`.
/// History lines: `W key version balance read outcome` per acknowledged
/// write, `E key ...` per failure.
async fn workload(accounts: &Dao<Account>, number: u64, keys: &[u64]) -> Vec<String> {
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (accounts, keys) = (accounts.clone(), keys.to_vec());
            tokio::spawn(async move {
                let mut state = (number << 32) | (task + 1);
                let mut out = Vec::new();
                for op in 0..OPS {
                    // xorshift: a fixed key sequence per task.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = keys[(state % keys.len() as u64) as usize];
                    let balance = (number * 1_000_000 + task * 1_000 + op + 1) as i64;
                    out.push(read_modify_update(&accounts, key, balance).await);
                }
                out
            })
        })
        .collect();
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.expect("a workload task panicked"));
    }
    history
}

/// One operation; a conflict is recorded and the next operation reads again.
async fn read_modify_update(accounts: &Dao<Account>, key: u64, balance: i64) -> String {
    let kind = |e: &Error| match e {
        Error::Conflict { .. } => "conflict",
        Error::NotFound { .. } => "notfound",
        Error::Unavailable { .. } => "unavailable",
        _ => "other",
    };
    let mut row = match accounts.read(key).await {
        Ok(Some(row)) => row,
        Ok(None) => return format!("E {key} read other: no row"),
        Err(e) => return format!("E {key} read {}: {e}", kind(&e)),
    };
    let read = row.balance;
    row.balance = balance;
    match accounts.update(&mut row).await {
        Ok(outcome) => format!("W {key} {} {balance} {read} {outcome:?}", row.version),
        Err(e) => format!("E {key} update {}: {e}", kind(&e)),
    }
}

/// `D key version balance error` per dead letter.
fn dead_letters(journal: &Journal) -> Vec<String> {
    let letters = journal
        .dead_letters()
        .expect("the dead letters are readable");
    letters
        .iter()
        .map(|letter| {
            let record = letter.entry.op.record();
            let field = |name: &str| record.and_then(|r| r.get(name));
            let version = field("version").and_then(|v| v.as_u64()).unwrap_or(0);
            let balance = field("balance").and_then(|v| v.as_i64()).unwrap_or(0);
            let key = &letter.entry.key;
            format!("D {key} {version} {balance} {}", letter.error)
        })
        .collect()
}

/// A child process; killed if the test fails before it exits.
struct Server {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: UnboundedReceiver<String>,
    seen: Vec<String>,
    results: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, url: &str, dir: &Path) -> Server {
        let results = dir.join(format!("{name}.results"));
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
            .env(ROLE, name)
            .env(URL, url)
            .env(JOURNAL, dir.join(format!("{name}.journal")))
            .env(RESULTS, &results)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start server {name}: {e}"));
        let stdin = child.stdin.take().expect("the child's stdin is piped");
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let (lines, seen) = (lines_of(stdout), Vec::new());
        Server {
            name,
            child,
            stdin,
            lines,
            seen,
            results,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("server {}: cannot send {command:?}: {e}", self.name));
    }

    /// Waits for `PREFIX ok <what>...` (libtest may have started the line).
    async fn answer(&mut self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (name, seen) = (self.name, &self.seen);
            let line = match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("server {name} ended before `{what}`: {seen:#?}"),
                Err(_) => panic!("server {name}: no `{what}` in {within:?}: {seen:#?}"),
            };
            self.seen.push(line.clone());
            if let Some((_, rest)) = line.split_once(PREFIX) {
                let rest = rest.trim();
                if let Some(answer) = rest.strip_prefix("ok ").filter(|a| a.starts_with(what)) {
                    return answer.to_owned();
                }
                panic!(
                    "server {name}: `{rest}` instead of `{what}`: {:#?}",
                    self.seen
                );
            }
        }
    }

    /// After "exit": the process ends, successfully.
    async fn exited(&mut self) {
        let eof = timeout(Duration::from_secs(30), async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line);
            }
        });
        let (name, ended) = (self.name, eof.await.is_ok());
        assert!(ended, "server {name} did not exit: {:#?}", self.seen);
        let status = self.child.wait().expect("the child's exit status");
        assert!(
            status.success(),
            "server {name}: {status}: {:#?}",
            self.seen
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `command` to every server, then waits for each to answer.
async fn all(servers: &mut [Server], command: &str, within: Duration) -> Vec<String> {
    for server in servers.iter_mut() {
        server.send(command);
    }
    let mut answers = Vec::new();
    for server in servers.iter_mut() {
        answers.push(server.answer(command, within).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_one_partitioned_keep_every_acknowledged_write() {
    let started = std::time::Instant::now();
    let direct = fresh_database("two_servers").await;
    seed(&direct).await;
    let proxy = FaultProxy::start(mysql_addr()).await;
    let proxy = proxy.expect("the proxy starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let through = url_via(&direct, proxy.addr(), "deadline_ms=300&pool_size=4");
    let sep = if direct.contains('?') { '&' } else { '?' };
    let mut servers = [
        Server::spawn("A", &through, dir.path()),
        Server::spawn("B", &format!("{direct}{sep}pool_size=8"), dir.path()),
    ];
    for server in servers.iter_mut() {
        server.answer("ready", Duration::from_secs(60)).await;
    }
    all(&mut servers, "warm", Duration::from_secs(30)).await;
    assert!(proxy.connections() > 0, "A goes through the proxy");
    // Partition A: every connection reset, open and new. (Not followed by
    // `Refuse`: a connection that sees both changes as one keeps working.)
    proxy.set(Mode::Reset).await;
    all(&mut servers, "work", Duration::from_secs(300)).await;
    proxy.set(Mode::Pass).await;
    let drained = all(&mut servers, "drain", Duration::from_secs(90)).await;
    all(&mut servers, "exit", Duration::from_secs(30)).await;
    for server in servers.iter_mut() {
        server.exited().await;
    }
    let histories = servers.each_ref().map(History::read);
    let summary = check(&histories, &final_rows(&direct).await);
    let secs = started.elapsed().as_secs_f64();
    println!("two_servers: {summary}; {secs:.1} s; A {}", drained[0]);
}

/// Every key at version 1, balance 0.
async fn seed(url: &str) {
    let store = Arc::new(MysqlStore::new(url).expect("a valid MySQL URL"));
    let plan = Arc::new(Plan::builder(store).build().expect("the seeding plan"));
    let accounts: Dao<Account> = Dao::open(plan).await.expect("the table is created");
    for id in HOT.chain(A_ONLY).chain(B_ONLY) {
        let mut account = Account {
            id,
            balance: 0,
            version: 0,
        };
        accounts.create(&mut account).await.expect("seeded");
    }
}

/// MySQL's rows: key -> (version, balance).
async fn final_rows(url: &str) -> BTreeMap<u64, (u64, i64)> {
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .expect("MySQL answers");
    let query = "SELECT id, version, balance FROM accounts";
    let rows: Vec<(u64, u64, i64)> = conn.query(query).await.expect("the final rows");
    conn.disconnect().await.expect("disconnect");
    rows.into_iter().map(|(k, v, b)| (k, (v, b))).collect()
}

/// A dead letter's (key, version, balance).
type Dead = (u64, u64, i64);

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Acked {
    server: &'static str,
    key: u64,
    version: u64,
    balance: i64,
    /// The balance of the row it was computed from.
    read: i64,
    outcome: String,
}

impl std::fmt::Display for Acked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Acked {
            server,
            version,
            balance,
            read,
            outcome,
            ..
        } = self;
        write!(
            f,
            "v{version} {server} {outcome} balance {balance} read {read}"
        )
    }
}

/// What a server reported.
#[derive(Debug, Default)]
struct History {
    writes: Vec<Acked>,
    /// The lines of failed operations.
    errors: Vec<String>,
    /// (key, version, balance, error) per dead letter.
    letters: Vec<(u64, u64, i64, String)>,
}

impl History {
    fn read(server: &Server) -> History {
        let text = std::fs::read_to_string(&server.results)
            .unwrap_or_else(|e| panic!("server {}'s results: {e}", server.name));
        let mut history = History::default();
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let num = |i: usize| -> i64 {
                let field = f.get(i).unwrap_or_else(|| panic!("short line {line:?}"));
                field
                    .parse()
                    .unwrap_or_else(|_| panic!("field {i} of {line:?}"))
            };
            match f[0] {
                "W" => history.writes.push(Acked {
                    server: server.name,
                    key: num(1) as u64,
                    version: num(2) as u64,
                    balance: num(3),
                    read: num(4),
                    outcome: f.get(5).unwrap_or(&"").to_string(),
                }),
                "E" => history.errors.push(line.to_owned()),
                "D" => {
                    let error = line.splitn(5, ' ').nth(4).unwrap_or_default().to_owned();
                    let letter = (num(1) as u64, num(2) as u64, num(3), error);
                    history.letters.push(letter);
                }
                _ => panic!("server {}: unexpected line {line:?}", server.name),
            }
        }
        history
    }
}

/// Applies the oracle (see the module docs); returns the summary.
fn check(histories: &[History; 2], rows: &BTreeMap<u64, (u64, i64)>) -> String {
    let writes: Vec<&Acked> = histories.iter().flat_map(|h| &h.writes).collect();
    let letters: Vec<_> = histories.iter().flat_map(|h| &h.letters).collect();
    let dead: HashSet<Dead> = letters.iter().map(|l| (l.0, l.1, l.2)).collect();
    let leaked = histories[0]
        .writes
        .iter()
        .find(|w| w.outcome != "Journaled");
    assert!(leaked.is_none(), "A is partitioned, yet {leaked:?}");
    for line in histories.iter().flat_map(|h| &h.errors) {
        assert!(!line.contains(" other: "), "an unexpected error: {line}");
    }
    for (key, version, balance, error) in &letters {
        let of = |w: &&&Acked| (w.key, w.version, w.balance) == (*key, *version, *balance);
        let journaled = writes.iter().filter(of).any(|w| w.outcome == "Journaled");
        let why = format!("dead letter (key {key}, version {version}, balance {balance}): {error}");
        assert!(journaled, "{why}: no journaled write acknowledged it");
        // Refused itself, or refused because it was built on a refused entry.
        let precondition = error.contains("version conflict")
            || error.contains("no row with key")
            || error.contains("which was refused")
            || error.contains("follows refused entry");
        assert!(precondition, "{why}: not a precondition failure");
        assert!(HOT.contains(key), "{why}: only one server writes this key");
    }
    for key in HOT.chain(A_ONLY).chain(B_ONLY) {
        check_key(key, &writes, &dead, rows.get(&key).copied());
    }
    let applied = |keys: std::ops::Range<u64>| {
        let of = |w: &&&Acked| keys.contains(&w.key) && w.server == "A";
        let live = |w: &&&Acked| !dead.contains(&(w.key, w.version, w.balance));
        writes.iter().filter(of).filter(live).count()
    };
    let (hot_letters, a_only) = (letters.len(), applied(A_ONLY));
    assert!(
        hot_letters > 0,
        "no dead letter on the hot keys: no overlap"
    );
    assert!(a_only > 0, "no journaled write of A applied");
    let count = |i: usize, what: &str| {
        histories[i]
            .errors
            .iter()
            .filter(|e| e.contains(what))
            .count()
    };
    format!(
        "A acked {} (journaled, applied: {a_only} on A-only keys, {} on hot keys), B acked {}, \
         dead letters {hot_letters} (all on hot keys), conflicts A {} B {}, failed reads A {} B {}",
        histories[0].writes.len(),
        applied(HOT),
        histories[1].writes.len(),
        count(0, "conflict"),
        count(1, "conflict"),
        count(0, " read "),
        count(1, " read "),
    )
}

/// The oracle for one key: one survivor per version from 1 to MySQL's, each
/// computed from the one below, the last one in MySQL.
fn check_key(key: u64, writes: &[&Acked], dead: &HashSet<Dead>, row: Option<(u64, i64)>) {
    let mut mine: Vec<&Acked> = writes.iter().copied().filter(|w| w.key == key).collect();
    mine.sort_by_key(|w| (w.version, w.server));
    let is_dead = |w: &Acked| dead.contains(&(w.key, w.version, w.balance));
    let fail = |what: String| -> ! {
        let fate = |w: &Acked| {
            if is_dead(w) {
                "dead letter"
            } else {
                "survives"
            }
        };
        let lines: Vec<String> = mine.iter().map(|w| format!("  {w}: {}", fate(w))).collect();
        let lines = lines.join("\n");
        panic!(
            "key {key}: {what}\nMySQL (version, balance): {row:?}; seed v1 balance 0; acknowledged:\n{lines}"
        )
    };
    // version -> (balance, balance read) per survivor; the seed first.
    let mut survivors: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::from([(1, vec![(0, 0)])]);
    for w in mine.iter().filter(|w| !is_dead(w)) {
        survivors
            .entry(w.version)
            .or_default()
            .push((w.balance, w.read));
    }
    for (&version, these) in &survivors {
        if these.len() > 1 {
            fail(format!(
                "{these:?} (balance, read) all survive at version {version}: one overwrote the other"
            ));
        }
        let (below, read) = (version - 1, these[0].1);
        match survivors.get(&below) {
            _ if version == 1 => {}
            None => fail(format!(
                "nothing survives at version {below}, below {version}"
            )),
            Some(under) if under[0].0 != read => fail(format!(
                "the write at version {version} read balance {read}, but balance {} survives at version {below}: \
                 it was applied over a row it never saw (an older chain overwrote the other server's write)",
                under[0].0
            )),
            Some(_) => {}
        }
    }
    let (&top, last) = survivors.last_key_value().expect("the seed");
    if row != Some((top, last[0].0)) {
        fail(format!(
            "MySQL does not hold the highest survivor (v{top}, balance {})",
            last[0].0
        ));
    }
}
