//! The workers: random creates, updates, deletes and reads of the keys,
//! each holding its key's slot of the reference (the last acknowledged state)
//! for the length of the operation, and counting what went wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use octopus::{Deletion, Error, Model, WriteOutcome};
use octopus_test_support::Rng;
use tokio::sync::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::world::App;
use crate::{CALL_BOUND_MS, Item, KEYS, WORKERS};

/// What the workers saw.
#[derive(Default)]
pub struct Counters {
    pub ops: AtomicU64,
    pub journaled: AtomicU64,
    /// Reads that returned something other than the last acknowledged state.
    pub stale_reads: AtomicU64,
    /// Reads that failed although the key had a pending journaled write.
    pub unserved_reads: AtomicU64,
    pub unavailable_reads: AtomicU64,
    /// Errors other than `Unavailable` on reads.
    pub unexpected: AtomicU64,
    /// Calls that took longer than [`CALL_BOUND_MS`].
    pub slow_calls: AtomicU64,
    pub max_call_ms: AtomicU64,
}

/// The reference: the last acknowledged state of each key, and whether
/// that write was journaled.
#[derive(Clone, Default)]
pub struct Slot {
    pub item: Option<Item>,
    journaled: bool,
}

/// One slot per key.
pub type Reference = Arc<Vec<Mutex<Slot>>>;

/// The running workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    done: Done,
}

/// What the stopped workers leave: the reference and the counters.
pub struct Done {
    pub reference: Reference,
    pub counters: Arc<Counters>,
}

impl Workers {
    /// Starts [`WORKERS`] workers on `app`, seeded from the clock.
    pub fn spawn(app: &Arc<RwLock<App>>) -> Workers {
        let reference: Reference =
            Arc::new((0..KEYS).map(|_| Mutex::new(Slot::default())).collect());
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let seed = Rng::clock_seed();
        println!("chaos: seed {seed}");
        let handles = (0..WORKERS)
            .map(|w| {
                let rng = Rng::new(seed.wrapping_mul(w as u64 + 7) | 1);
                let (app, reference) = (app.clone(), reference.clone());
                let (counters, stop) = (counters.clone(), stop.clone());
                tokio::spawn(worker(rng, app, reference, counters, stop))
            })
            .collect();
        Workers {
            handles,
            stop,
            done: Done {
                reference,
                counters,
            },
        }
    }

    /// Stops the workers and waits for their last operations.
    pub async fn stop(self) -> Done {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.handles {
            handle.await.unwrap();
        }
        self.done
    }
}

/// Operations on random keys until `stop`, timing each.
async fn worker(
    mut rng: Rng, app: Arc<RwLock<App>>, reference: Reference, counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let id = rng.below(KEYS);
        let mut slot = reference[id as usize].lock().await;
        let app = app.read().await;
        let choice = rng.below(100);
        let started = Instant::now();
        let outcome = if choice < 45 {
            read(&app, id, &slot, &counters).await
        } else {
            write(&app, id, &mut slot, choice < 60, &mut rng, &counters).await
        };
        let ms = started.elapsed().as_millis() as u64;
        counters.max_call_ms.fetch_max(ms, Ordering::SeqCst);
        if ms > CALL_BOUND_MS {
            counters.slow_calls.fetch_add(1, Ordering::SeqCst);
            eprintln!("call on key {id} took {ms} ms");
        }
        counters.ops.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = outcome {
            counters.unexpected.fetch_add(1, Ordering::SeqCst);
            eprintln!("unexpected error on key {id}: {e:?}");
        }
        drop(app);
        drop(slot);
        tokio::task::yield_now().await;
    }
}

/// Reads key `id`: it must return the last acknowledged state, or fail
/// `Unavailable` only if no journaled write of it is pending.
async fn read(app: &App, id: u64, slot: &Slot, counters: &Counters) -> Result<(), Error> {
    match app.items.read(id).await {
        Ok(got) => {
            if got != slot.item {
                counters.stale_reads.fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "stale read of {id}: got {got:?}, acknowledged {:?}",
                    slot.item
                );
            }
        }
        Err(e) if e.is_unavailable() => {
            counters.unavailable_reads.fetch_add(1, Ordering::SeqCst);
            // A key whose write is still pending must be served.
            let pending = app
                .plan
                .fallback()
                .pending(Item::SCHEMA, &id.into())
                .await?;
            if slot.journaled && pending.is_some() {
                counters.unserved_reads.fetch_add(1, Ordering::SeqCst);
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Creates key `id` if the reference has it absent, otherwise deletes it
/// (if `delete`) or updates it; records the acknowledged state.
async fn write(
    app: &App, id: u64, slot: &mut Slot, delete: bool, rng: &mut Rng, counters: &Counters,
) -> Result<(), Error> {
    let outcome = match slot.item.clone() {
        None => {
            let mut item = Item {
                id,
                value: rng.below(1_000_000),
                version: 0,
            };
            let out = app.items.create(&mut item).await?;
            slot.item = Some(item);
            out
        }
        Some(_) if delete => {
            let out = app.items.delete(id).await?;
            slot.item = None;
            match out {
                Deletion::Journaled => WriteOutcome::Journaled,
                _ => WriteOutcome::Primary,
            }
        }
        Some(mut item) => {
            item.value = rng.below(1_000_000);
            let out = app.items.update(&mut item).await?;
            slot.item = Some(item);
            out
        }
    };
    slot.journaled = outcome == WriteOutcome::Journaled;
    if slot.journaled {
        counters.journaled.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}
