//! Plans through outages: breaker settings that open and close within a
//! test's few calls, and waiting for a journal to drain.

use std::time::Duration;

use octopus::{BreakerOptions, Plan};

use crate::{check, eventually};

/// A breaker that opens after two failures in a window of four calls,
/// stays open `open_wait`, then lets one probe through (given a second at
/// most to finish): outages start and end within a test's few calls.
pub fn quick_breaker(open_wait: Duration) -> BreakerOptions {
    BreakerOptions {
        window: 4,
        minimum_calls: 2,
        open_wait,
        half_open_calls: 1,
        half_open_max_wait: Duration::from_secs(1),
        ..BreakerOptions::default()
    }
}

/// Polls, for up to `within`, until `plan`'s journal has nothing pending;
/// panics with the plan's statistics if it still has. Panics if the plan
/// has no journal.
pub async fn until_drained(plan: &Plan, within: Duration) {
    eventually("the journal to drain", within, async || {
        let stats = plan.stats();
        let fallback = stats.fallback.as_ref().expect("the plan has a journal");
        check(fallback.pending == 0, stats)
    })
    .await;
}
