//! Whoever is told the journal drained (a mode watcher woken by
//! `Healthy`, the "journal drained" log line) finds nothing pending. Its
//! own binary: the test installs a tracing subscriber for its thread, and
//! tracing caches which call sites are enabled across a binary's threads.

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, CachePolicy, Dao, MemoryStore, Model, Plan, WriteOutcome};
use octopus_test_support::Scripted;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "accounts")]
struct Account {
    #[octopus(key)]
    id: u64,
    balance: i64,
    #[octopus(version)]
    version: u64,
}

async fn plan(primary: &Arc<Scripted>, dir: &std::path::Path) -> Arc<Plan> {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let breaker = BreakerOptions {
        window: 4,
        minimum_calls: 2,
        open_wait: Duration::from_millis(50),
        half_open_calls: 1,
        ..BreakerOptions::default()
    };
    Arc::new(
        Plan::builder(primary.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(breaker)
            .journal(journal)
            .build()
            .unwrap(),
    )
}

fn pending(plan: &Plan) -> u64 {
    plan.stats().fallback.unwrap().pending
}

/// A subscriber that, when the journal logs that it drained, records what
/// the plan's counters say at that moment.
struct AtDrainedLine {
    plan: Arc<std::sync::OnceLock<Arc<Plan>>>,
    seen: Arc<std::sync::Mutex<Vec<(octopus::Mode, u64)>>>,
}

impl tracing::Subscriber for AtDrainedLine {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Some(plan) = self.plan.get()
            && message.0.starts_with("journal drained")
        {
            let stats = plan.stats().fallback.unwrap();
            self.seen.lock().unwrap().push((stats.mode, stats.pending));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn whoever_is_told_the_journal_drained_finds_nothing_pending() {
    let plan_cell = Arc::new(std::sync::OnceLock::new());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(AtDrainedLine {
        plan: plan_cell.clone(),
        seen: seen.clone(),
    });
    // One thread: the replayer's log line is seen by this thread's subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let primary = Scripted::new();
        let plan = plan(&primary, dir.path()).await;
        plan_cell.set(plan.clone()).ok().unwrap();
        let accounts: Dao<Account> = Dao::open(plan.clone()).await.unwrap();
        primary.set_down(true);
        for id in 0..20 {
            let mut a = Account {
                id,
                balance: 1,
                version: 0,
            };
            assert_eq!(
                accounts.create(&mut a).await.unwrap(),
                WriteOutcome::Journaled
            );
        }
        let mut modes = plan.watch_mode();
        primary.set_down(false);
        // A mode watcher woken by `Healthy` finds nothing pending.
        loop {
            modes.changed().await.unwrap();
            if *modes.borrow_and_update() == octopus::Mode::Healthy {
                break;
            }
        }
        assert_eq!(pending(&plan), 0, "told Healthy: {:?}", plan.stats());
        tokio::time::timeout(Duration::from_secs(10), plan.drained())
            .await
            .expect("drained");
    });
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the journal never logged that it drained");
    for (mode, pending) in seen {
        assert_eq!(
            (mode, pending),
            (octopus::Mode::Healthy, 0),
            "the journal logged that it drained"
        );
    }
}
