//! Shared setup of the benchmarks (see `benches/`); results in
//! BENCHMARKS.md at the repository root.
