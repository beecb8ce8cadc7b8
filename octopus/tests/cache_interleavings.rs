//! The cache protocol under every interleaving of one writer and one
//! reader of a key, over two cache levels in front of a primary.
//!
//! Every call a task makes to the primary or to a cache level is a step:
//! the task stops before it until the driver lets it go. The driver runs
//! every schedule (which task takes the next step) for an update and for a
//! delete, from every starting state of the caches, and checks what users
//! would see: a read that starts after the write was acknowledged returns
//! the new state, and so does every read once both tasks are done.

use std::sync::Arc;

use octopus::{
    BoxFuture, Cache, CachePolicy, Dao, FillToken, Key, Lookup, MemoryStore, Model, Plan, Record,
    Result, Schema, Store,
};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "notes")]
struct Note {
    #[octopus(key)]
    id: u64,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Writer,
    Reader,
}

tokio::task_local! {
    static ROLE: Who;
}

/// A step a task is about to take, and the way to let it.
struct Request {
    who: Who,
    what: String,
    go: oneshot::Sender<()>,
}

#[derive(Clone)]
struct Gate(mpsc::UnboundedSender<Request>);

impl Gate {
    /// Waits for the driver's go, if the calling task is one it drives.
    async fn step(&self, what: impl FnOnce() -> String) {
        let Ok(who) = ROLE.try_with(|w| *w) else {
            return;
        };
        let (go, wait) = oneshot::channel();
        let what = what();
        if self.0.send(Request { who, what, go }).is_ok() {
            let _ = wait.await;
        }
    }
}

/// A real store (the memory store, as primary or cache) whose calls are
/// steps.
struct Stepped {
    name: String,
    inner: Arc<MemoryStore>,
    gate: Gate,
}

impl Stepped {
    fn new(name: &str, inner: Arc<MemoryStore>, gate: &Gate) -> Arc<Self> {
        Arc::new(Stepped {
            name: name.into(),
            inner,
            gate: gate.clone(),
        })
    }

    fn label(&self, op: &str) -> String {
        format!("{} {op}", self.name)
    }
}

impl Cache for Stepped {
    fn name(&self) -> &str {
        &self.name
    }

    fn lookup<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Lookup>> {
        Box::pin(async move {
            self.gate.step(|| self.label("lookup")).await;
            Cache::lookup(&*self.inner, schema, key).await
        })
    }

    fn fill<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.gate.step(|| self.label("fill")).await;
            self.inner.fill(schema, record, token).await
        })
    }

    fn put<'a>(&'a self, schema: &'static Schema, record: &'a Record) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gate.step(|| self.label("put")).await;
            Cache::put(&*self.inner, schema, record).await
        })
    }

    fn invalidate<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gate.step(|| self.label("invalidate")).await;
            self.inner.invalidate(schema, key).await
        })
    }
}

impl Store for Stepped {
    fn name(&self) -> &str {
        &self.name
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        self.inner.ensure_schema(schema)
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            self.gate.step(|| self.label("get")).await;
            Store::get(&*self.inner, schema, key).await
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            self.gate.step(|| self.label("get_many")).await;
            self.inner.get_many(schema, keys).await
        })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gate.step(|| self.label("insert")).await;
            self.inner.insert(schema, record).await
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gate.step(|| self.label("upsert")).await;
            self.inner.upsert(schema, record).await
        })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.gate.step(|| self.label("update")).await;
            self.inner.update(schema, record, expected_version).await
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.gate.step(|| self.label("delete")).await;
            self.inner.delete(schema, key).await
        })
    }
    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        self.inner.scan(schema, after, limit)
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Update,
    Delete,
}

/// Which levels hold the old row when the tasks start.
#[derive(Debug, Clone, Copy)]
enum Cached {
    Nowhere,
    Back,
    Both,
}

/// What one schedule did: the steps in order, what the reader was told
/// and whether it started after the write was acknowledged, and the reads
/// after both were done.
#[derive(Debug)]
struct Run {
    trace: Vec<String>,
    read: Option<Note>,
    read_after_ack: bool,
    final_reads: Vec<Option<Note>>,
}

const OLD: &str = "old";
const NEW: &str = "new";

async fn run(op: Op, cached: Cached, policy: CachePolicy, schedule: u32) -> Run {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Gate(tx);
    let front = Arc::new(MemoryStore::new());
    let back = Arc::new(MemoryStore::new());
    let primary = Arc::new(MemoryStore::new());
    let old = Note {
        id: 1,
        text: OLD.into(),
    };
    primary
        .upsert(Note::SCHEMA, &old.to_record().unwrap())
        .await
        .unwrap();
    let record = old.to_record().unwrap();
    if matches!(cached, Cached::Back | Cached::Both) {
        Cache::put(&*back, Note::SCHEMA, &record).await.unwrap();
    }
    if matches!(cached, Cached::Both) {
        Cache::put(&*front, Note::SCHEMA, &record).await.unwrap();
    }
    let plan = Arc::new(
        Plan::builder(Stepped::new("primary", primary, &gate))
            .cache(Stepped::new("front", front, &gate), policy)
            .cache(Stepped::new("back", back, &gate), policy)
            .build()
            .unwrap(),
    );
    let dao: Dao<Note> = Dao::new(plan);
    let acked = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let writer = {
        let (dao, acked) = (dao.clone(), acked.clone());
        tokio::spawn(ROLE.scope(Who::Writer, async move {
            match op {
                Op::Update => {
                    let mut note = Note {
                        id: 1,
                        text: NEW.into(),
                    };
                    dao.update(&mut note).await.unwrap();
                }
                Op::Delete => {
                    dao.delete(1u64).await.unwrap();
                }
            }
            acked.store(true, std::sync::atomic::Ordering::SeqCst);
        }))
    };
    // The reader starts at its first step, so "after the ack" is decided
    // where the schedule lets it start.
    let reader = {
        let (dao, acked) = (dao.clone(), acked.clone());
        let gate = gate.clone();
        tokio::spawn(ROLE.scope(Who::Reader, async move {
            gate.step(|| "reader start".into()).await;
            let after_ack = acked.load(std::sync::atomic::Ordering::SeqCst);
            (dao.read(1u64).await.unwrap(), after_ack)
        }))
    };
    drop(gate);

    let mut trace = Vec::new();
    let mut waiting: Vec<Request> = Vec::new();
    let (mut writer_done, mut reader_done) = (false, false);
    let mut bit = 0;
    let mut writer = Some(writer);
    let mut reader = Some(reader);
    let mut read = None;
    let mut read_after_ack = false;
    loop {
        // Wait until every live task is at a step (or finished).
        loop {
            let live = usize::from(!writer_done) + usize::from(!reader_done);
            if waiting.len() == live {
                break;
            }
            tokio::select! {
                Some(r) = rx.recv() => waiting.push(r),
                _ = async { writer.as_mut().unwrap().await }, if !writer_done && !waiting.iter().any(|r| r.who == Who::Writer) => {
                    writer_done = true;
                    writer = None;
                }
                out = async { reader.as_mut().unwrap().await }, if !reader_done && !waiting.iter().any(|r| r.who == Who::Reader) => {
                    let (r, after) = out.unwrap();
                    read = Some(r);
                    read_after_ack = after;
                    reader_done = true;
                    reader = None;
                }
            }
        }
        if waiting.is_empty() {
            break;
        }
        let want = if schedule >> bit & 1 == 0 {
            Who::Writer
        } else {
            Who::Reader
        };
        bit = (bit + 1).min(31);
        let i = waiting.iter().position(|r| r.who == want).unwrap_or(0);
        let r = waiting.swap_remove(i);
        trace.push(format!("{:?}: {}", r.who, r.what));
        let _ = r.go.send(());
    }
    let mut final_reads = Vec::new();
    for _ in 0..2 {
        final_reads.push(dao.read(1u64).await.unwrap());
    }
    Run {
        trace,
        read: read.unwrap(),
        read_after_ack,
        final_reads,
    }
}

async fn check_every_schedule(policy: CachePolicy) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for op in [Op::Update, Op::Delete] {
        for cached in [Cached::Nowhere, Cached::Back, Cached::Both] {
            for schedule in 0..(1u32 << 10) {
                let r = run(op, cached, policy, schedule).await;
                runs += 1;
                let new = match op {
                    Op::Update => Some(Note {
                        id: 1,
                        text: NEW.into(),
                    }),
                    Op::Delete => None,
                };
                let stale_read = r.read_after_ack && r.read != new;
                let stale_after = r.final_reads.iter().any(|n| *n != new);
                if stale_read || stale_after {
                    failures.push(format!(
                        "{op:?} with the old row cached {cached:?}: read {:?} (started after the ack: {}), then {:?}; steps:\n  {}",
                        r.read,
                        r.read_after_ack,
                        r.final_reads,
                        r.trace.join("\n  ")
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} schedules served a row older than the acknowledged write; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_schedule_of_a_reader_and_an_invalidating_writer_serves_the_old_row() {
    check_every_schedule(CachePolicy::Invalidate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_schedule_of_a_reader_and_a_writing_through_writer_serves_the_old_row() {
    check_every_schedule(CachePolicy::WriteThrough).await;
}
