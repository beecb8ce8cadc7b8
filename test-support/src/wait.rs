//! Waiting for a condition: poll it, with a deadline, and say what was last
//! seen when the deadline passes. A test never sleeps for a guessed time
//! instead.

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause between two polls; each pause doubles, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Ok`, for up to `within` (on tokio's
/// clock, so a paused clock works too), and returns its value; once the
/// deadline has passed, returns the last `Err`: what the probe last saw.
///
/// For a test that goes on either way (it gives something a chance to
/// happen); a test that needs the condition uses [`eventually`].
pub async fn poll_until<T, S>(
    within: Duration, mut probe: impl AsyncFnMut() -> Result<T, S>,
) -> Result<T, S> {
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Polls `probe` until it returns `Ok`, for up to `within`, and returns its
/// value; panics once the deadline has passed, naming `what` was awaited and
/// the last `Err` (what the probe last saw).
///
/// ```no_run
/// # async fn example(journal: octopus::journal::Journal) {
/// use std::time::Duration;
/// use octopus_test_support::{check, eventually};
///
/// eventually("the journal drains", Duration::from_secs(10), async || {
///     check(journal.pending() == 0, journal.stats())
/// })
/// .await;
/// # }
/// ```
pub async fn eventually<T, S: Debug>(
    what: &str, within: Duration, probe: impl AsyncFnMut() -> Result<T, S>,
) -> T {
    match poll_until(within, probe).await {
        Ok(value) => value,
        Err(seen) => panic!("waited {within:?} for {what}; last seen: {seen:?}"),
    }
}

/// A probe's answer from a condition: `Ok(())` if it `holds`, otherwise
/// `Err(seen)`, what to report if it never does.
pub fn check<S>(holds: bool, seen: S) -> Result<(), S> {
    if holds { Ok(()) } else { Err(seen) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_probe_holds() {
        let mut calls = 0;
        let got = eventually("the third call", Duration::from_secs(1), async || {
            calls += 1;
            if calls == 3 { Ok(calls) } else { Err(calls) }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_with_what_it_last_saw() {
        let started = Instant::now();
        let mut calls = 0u32;
        let out = poll_until(Duration::from_millis(100), async || {
            calls += 1;
            check(false, calls)
        })
        .await;
        assert_eq!(out, Err(calls));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waited 50ms for the impossible; last seen: \"nope\"")]
    async fn eventually_panics_naming_what_it_waited_for() {
        eventually("the impossible", Duration::from_millis(50), async || {
            check(false, "nope")
        })
        .await;
    }
}
