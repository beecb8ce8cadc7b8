//! Runnable examples of Octopus; see the `quickstart` example.
