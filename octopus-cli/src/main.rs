//! `octopus`: the operator's command, over the same config file (and
//! `OCTOPUS__…` overrides) as the applications.
//!
//! ```text
//! octopus [--config octopus.toml] [--json] doctor
//! octopus [--config octopus.toml] [--json] journal [--dir DIR] status | verify
//! octopus … journal inspect [--table T] [--key K]
//! octopus … journal dead-letters list | export | requeue [--table T] [--key K]
//! ```
//!
//! `doctor` reaches every server the config names (each plan's primary,
//! caches and fallback) within its deadline, checks a journal directory is
//! writable and its lock free, prints what answered (versions), and exits
//! 1 naming what failed (2 if the config itself is wrong). `journal` looks
//! at a file journal (the config's `file://` fallback, or `--dir`) without
//! opening it: what is pending, its dead letters, whether its files are
//! sound (`verify` exits 1 if not); `dead-letters requeue` appends refused
//! entries again and needs the journal's lock. `--json` prints one JSON
//! document instead of lines, for scripts.

mod doctor;
mod journal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The operator's command for Octopus.
#[derive(Parser)]
#[command(name = "octopus", version, about)]
struct Cli {
    /// The config file (TOML; `OCTOPUS__…` variables override it).
    #[arg(long, short, global = true, default_value = "octopus.toml")]
    config: PathBuf,
    /// Print one JSON document instead of lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reach every server the config names and say what answered.
    Doctor,
    /// Look into a file journal: status, pending entries, dead letters.
    Journal(journal::JournalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("octopus: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Doctor => doctor::run(&cli.config, cli.json).await,
            Command::Journal(args) => journal::run(&cli.config, cli.json, args).await,
        }
    })
}
