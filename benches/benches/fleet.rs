//! The fleet's journal on JetStream, against what bounds it, in one run on
//! one nats-server of the bench's own (JetStream, `sync_interval: always`,
//! so every acknowledged message is on disk):
//!
//! - `jetstream_journal`: a journaled update through `JetStreamJournal`
//!   (read the row's last message, check, publish conditionally, await the
//!   acknowledgement);
//! - `raw_publish_ack`: the floor, an async-nats publish of the same bytes
//!   on the same subjects, awaiting the acknowledgement;
//! - `file_journal`: the local journal (fsync, group commit) taking the same
//!   updates.
//!
//! At 1, 8 and 64 writers, each on keys of its own; every update changes
//! its row. p50/p99 per write are printed after each group.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BenchRow;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use octopus::journal::log::{self, Intent};
use octopus::journal::{Journal, JournalOptions};
use octopus::{Error, Fallback, Key, Model, Write};
use octopus_adapters::nats::JetStreamJournal;
use octopus_test_support::nats::OwnNats;

/// Updates each writer makes per iteration.
const PER_WRITER: u64 = 50;

/// One update of row `id` to a new value.
fn update(id: u64, values: &AtomicU64) -> Write {
    Write::Update {
        record: BenchRow::with_value(id, common::next_value(values))
            .to_record()
            .unwrap(),
        expected_version: None,
    }
}

/// Runs `writers` tasks, each making [`PER_WRITER`] calls of `op` on its
/// own keys; records each call's latency; returns the wall time.
async fn round<F, Fut>(writers: u64, samples: &Mutex<Vec<Duration>>, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(PER_WRITER as usize);
                for i in 0..PER_WRITER {
                    let t = Instant::now();
                    op(w * 1000 + i % 10).await;
                    mine.push(t.elapsed());
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    samples.lock().unwrap().extend(all);
    wall
}

fn appends(c: &mut Criterion) {
    let rt = common::multi_thread();
    let nats = rt.block_on(OwnNats::start());
    let journal = Arc::new(
        rt.block_on(JetStreamJournal::connect(&format!(
            "{}?stream=bench",
            nats.url()
        )))
        .unwrap(),
    );
    let js = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
    });
    let dir = tempfile::tempdir().unwrap();
    let file = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let values = Arc::new(AtomicU64::new(common::FIRST_VALUE));
    for writers in [1u64, 8, 64] {
        let mut g = c.benchmark_group(format!("fleet/append/{writers}_writers"));
        g.throughput(Throughput::Elements(writers * PER_WRITER));
        let samples: Vec<Arc<Mutex<Vec<Duration>>>> = (0..3).map(|_| Arc::default()).collect();
        g.bench_function(BenchmarkId::from_parameter("jetstream_journal"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (journal, values, s) = (journal.clone(), values.clone(), samples[0].clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (journal, values) = (journal.clone(), values.clone());
                        total += round(writers, &s, move |id| {
                            let (journal, values) = (journal.clone(), values.clone());
                            async move {
                                let write = update(id, &values);
                                let outage = Error::unavailable("mysql", "down");
                                journal
                                    .write(BenchRow::SCHEMA, &write, None, outage)
                                    .await
                                    .unwrap();
                            }
                        })
                        .await;
                    }
                    total
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("raw_publish_ack"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (js, values, s) = (js.clone(), values.clone(), samples[1].clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (js, values) = (js.clone(), values.clone());
                        total += round(writers, &s, move |id| {
                            let (js, values) = (js.clone(), values.clone());
                            async move {
                                let row = BenchRow::with_value(id, common::next_value(&values));
                                let record = row.to_record().unwrap();
                                let key = Key::UInt(id);
                                let bytes = log::encode(
                                    BenchRow::SCHEMA,
                                    &key,
                                    Intent::Update(&record, None),
                                    None,
                                );
                                let subject = format!("octopus.bench.rows.bench_rows.raw{id}");
                                js.publish(subject, bytes.into())
                                    .await
                                    .unwrap()
                                    .await
                                    .unwrap();
                            }
                        })
                        .await;
                    }
                    total
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("file_journal"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (file, values, s) = (file.clone(), values.clone(), samples[2].clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (file, values) = (file.clone(), values.clone());
                        total += round(writers, &s, move |id| {
                            let (file, values) = (file.clone(), values.clone());
                            async move {
                                let write = update(id, &values);
                                let outage = Error::unavailable("mysql", "down");
                                file.write(BenchRow::SCHEMA, &write, None, outage)
                                    .await
                                    .unwrap();
                            }
                        })
                        .await;
                    }
                    total
                }
            })
        });
        g.finish();
        for (name, s) in ["jetstream_journal", "raw_publish_ack", "file_journal"]
            .iter()
            .zip(&samples)
        {
            common::report(&format!("fleet/append/{writers}_writers/{name}"), s);
        }
    }
    rt.block_on(file.close()).unwrap();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = appends
}
criterion_main!(benches);
