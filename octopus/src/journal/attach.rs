//! Starting and stopping a journal's replayer: one per journal, shared by
//! the plans over the same primary, stopped when the last of them is
//! dropped or when the journal is closed.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::replay::Replayer;
use super::{Journal, journal_error, lock};
use crate::breaker::CircuitBreaker;
use crate::store::Store;
use crate::{Error, Result};

/// The running replayer of a journal.
pub(super) struct Attached {
    primary: String,
    plans: usize,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Journal {
    /// Starts replaying into `primary` (once per journal: a second plan over
    /// the same primary shares the replayer; another primary is an error).
    pub(super) fn start_replayer(
        &self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>,
    ) -> Result<()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::misuse(
                "a plan with a journal must be built inside a tokio runtime (its replayer runs there)",
            )
        })?;
        if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(journal_error(&self.shared.dir, "the journal is closed"));
        }
        let mut slot = lock(&self.shared.replayer);
        let previous = match slot.take() {
            Some(mut a) if !*a.stop.borrow() => {
                let same = a.primary == primary.name();
                let owner = a.primary.clone();
                if same {
                    a.plans += 1;
                }
                *slot = Some(a);
                return if same {
                    Ok(())
                } else {
                    Err(Error::config(
                        self.shared.dir.display().to_string(),
                        format!(
                            "this journal replays into `{owner}`; a plan over `{}` needs its own journal",
                            primary.name()
                        ),
                    ))
                };
            }
            // A replayer that was told to stop may still finish a batch:
            // the new one starts after it.
            Some(a) => Some(a.task),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let name = primary.name().to_owned();
        let replayer = Replayer::new(self.clone(), primary, breaker, stop_rx);
        let task = runtime.spawn(replayer.run(previous));
        *slot = Some(Attached {
            primary: name,
            plans: 1,
            stop,
            task,
        });
        Ok(())
    }

    /// Asks the replayer to stop once the last plan using it is gone.
    pub(super) fn signal_replayer_stop(&self) {
        let mut slot = lock(&self.shared.replayer);
        if let Some(a) = slot.as_mut() {
            a.plans = a.plans.saturating_sub(1);
            if a.plans == 0 {
                a.stop.send_replace(true);
            }
        }
    }

    /// Stops the replayer and waits for it.
    pub(super) async fn stop_replayer(&self) {
        let attached = lock(&self.shared.replayer).take();
        if let Some(a) = attached {
            a.stop.send_replace(true);
            let _ = a.task.await;
        }
    }
}
