//! Breaker settings for tests of outages.

use std::time::Duration;

use octopus::BreakerOptions;

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
