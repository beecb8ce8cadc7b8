//! `octopus journal …`: a file journal looked at, verified, and its dead
//! letters listed, exported or requeued.
//!
//! Every subcommand but `requeue` only reads: it takes no lock and writes
//! nothing, so it is safe on the journal of a running application.
//! `requeue` appends to the journal, which only the process holding its
//! lock may do: it opens the journal (recovering it), and says which
//! process holds it when that is not possible.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use octopus::config::{Config, redact_url};
use octopus::journal::{DeadLetter, Entry, Inspection, Journal, JournalOptions, inspect};
use serde_json::{Value as Json, json};

/// Which journal, and what to do with it.
#[derive(Args)]
pub struct JournalArgs {
    /// The journal's directory; by default the one `file://` fallback the
    /// config names.
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Pending entries (per table, the oldest's age), dead letters, files.
    Status,
    /// The pending entries, oldest first, one JSON object each.
    Inspect(Filter),
    /// Checks every segment and the checkpoint; exit 1 if damaged.
    Verify,
    /// Entries the primary refused at replay.
    #[command(subcommand)]
    DeadLetters(DeadCommand),
}

#[derive(Subcommand)]
enum DeadCommand {
    /// Each dead letter: its entry and the primary's error.
    List(Filter),
    /// Every dead letter as a JSON line (the file's own format), to stdout.
    Export(Filter),
    /// Appends the chosen dead letters to the journal again (fix what
    /// refused them first); needs the journal's lock.
    Requeue(Filter),
}

/// Which entries.
#[derive(Args, Clone)]
struct Filter {
    /// Only this table's.
    #[arg(long)]
    table: Option<String>,
    /// Only this key's (as text: `42`, `alice`).
    #[arg(long)]
    key: Option<String>,
}

impl Filter {
    fn picks(&self, e: &Entry) -> bool {
        self.table.as_ref().is_none_or(|t| *t == e.table)
            && self.key.as_ref().is_none_or(|k| *k == e.key.to_string())
    }
}

/// Runs `octopus journal …`.
pub async fn run(config: &Path, json: bool, args: JournalArgs) -> ExitCode {
    let dir = match args.dir.map_or_else(|| dir_from(config), Ok) {
        Ok(dir) => dir,
        Err(why) => return fail(json, 2, &why),
    };
    if !dir.is_dir() {
        return fail(
            json,
            2,
            &format!("{}: no such journal directory", dir.display()),
        );
    }
    let outcome = match args.command {
        JournalCommand::Status => status(&dir, json, false),
        JournalCommand::Verify => status(&dir, json, true),
        JournalCommand::Inspect(filter) => pending(&dir, json, &filter),
        JournalCommand::DeadLetters(DeadCommand::List(filter)) => letters(&dir, json, &filter),
        JournalCommand::DeadLetters(DeadCommand::Export(filter)) => export(&dir, &filter),
        JournalCommand::DeadLetters(DeadCommand::Requeue(filter)) => {
            requeue(&dir, json, &filter).await
        }
    };
    outcome.unwrap_or_else(|why| fail(json, 1, &why))
}

/// The directory of the one `file://` fallback `config` names.
fn dir_from(config: &Path) -> Result<PathBuf, String> {
    let config = Config::load_with_env(config).map_err(|e| e.to_string())?;
    let mut plans = vec![config.default.clone()];
    plans.extend(config.models.keys().map(|t| config.plan_for(t)));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for url in plans
        .iter()
        .filter_map(|p| p.fallback.as_ref())
        .flat_map(|f| f.urls())
    {
        if url.starts_with("file:") {
            let (dir, _) =
                octopus_adapters::config::file_journal(url).map_err(|e| e.to_string())?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        } else {
            eprintln!(
                "octopus journal: {} is not a file journal; skipped",
                redact_url(url)
            );
        }
    }
    match &dirs[..] {
        [dir] => Ok(dir.clone()),
        [] => Err("the config names no file:// fallback; give the journal with --dir".into()),
        many => Err(format!(
            "the config names {} journals ({}); choose one with --dir",
            many.len(),
            many.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn fail(json: bool, code: u8, why: &str) -> ExitCode {
    if json {
        println!("{}", json!({ "ok": false, "error": why }));
    } else {
        eprintln!("octopus journal: {why}");
    }
    ExitCode::from(code)
}

fn look(dir: &Path, visit: &mut dyn FnMut(&Entry)) -> Result<Inspection, String> {
    inspect(dir, visit).map_err(|e| e.to_string())
}

/// `status`, and `verify` (which fails on damage).
fn status(dir: &Path, json: bool, verify: bool) -> Result<ExitCode, String> {
    let found = look(dir, &mut |_| {})?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let age_secs = found.oldest_pending.map(|t| (now - t).max(0) / 1000);
    let sound = found.damage.is_empty();
    if json {
        println!(
            "{}",
            json!({
                "ok": sound || !verify,
                "dir": dir,
                "holder": found.holder,
                "holder_known": found.holder_known,
                "checkpoint": found.checkpoint,
                "first": found.first,
                "last": found.last,
                "segments": found.segments.iter().map(|(first, path, bytes)| json!({ "first": first, "path": path, "bytes": bytes })).collect::<Vec<_>>(),
                "pending": found.pending_total(),
                "pending_by_table": found.pending,
                "oldest_pending_age_secs": age_secs,
                "dead_letters": found.dead_letters,
                "quarantined": found.quarantined,
                "unfinished": found.unfinished.as_ref().map(|(p, at)| json!({ "path": p, "offset": at })),
                "damage": found.damage,
            })
        );
    } else {
        print_status(dir, &found, age_secs);
    }
    Ok(if verify && !sound {
        if !json {
            eprintln!(
                "octopus journal verify: {} problem(s) in {}",
                found.damage.len(),
                dir.display()
            );
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_status(dir: &Path, found: &Inspection, age_secs: Option<i64>) {
    println!("journal {}", dir.display());
    match (found.holder_known, found.holder) {
        (true, Some(pid)) => println!("  open in process {pid} (it holds the journal's lock)"),
        (true, None) => println!("  not open in any process"),
        (false, _) => println!("  whether a process has it open cannot be told here"),
    }
    println!("  checkpoint: entries up to {} done", found.checkpoint);
    let bytes: u64 = found.segments.iter().map(|s| s.2).sum();
    let range = match (found.first, found.last) {
        (Some(a), Some(b)) => format!(", entries {a} to {b}"),
        _ => String::new(),
    };
    println!(
        "  segments: {} ({bytes} bytes){range}",
        found.segments.len()
    );
    let tables: Vec<String> = found
        .pending
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    match age_secs {
        Some(age) => println!(
            "  pending: {} ({}), the oldest written {age} s ago",
            found.pending_total(),
            tables.join(", ")
        ),
        None => println!("  pending: 0"),
    }
    println!("  dead letters: {}", found.dead_letters);
    for q in &found.quarantined {
        println!("  quarantined bytes: {}", q.display());
    }
    if let Some((path, at)) = &found.unfinished {
        println!(
            "  an append in progress (or interrupted) at {} byte {at}",
            path.display()
        );
    }
    if found.damage.is_empty() {
        println!("  damage: none");
    }
    for d in &found.damage {
        println!("  DAMAGE {d}");
    }
}

/// `inspect`: the pending entries the filter picks.
fn pending(dir: &Path, json: bool, filter: &Filter) -> Result<ExitCode, String> {
    let mut shown = Vec::new();
    let found = look(dir, &mut |e| {
        if filter.picks(e) {
            if json {
                shown.push(e.to_json());
            } else {
                println!("{}", e.to_json());
            }
        }
    })?;
    if json {
        println!(
            "{}",
            json!({ "ok": true, "dir": dir, "pending": found.pending_total(), "entries": shown })
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The dead letters (not yet requeued) the filter picks, read without
/// opening the journal.
fn chosen(dir: &Path, filter: &Filter) -> Result<Vec<DeadLetter>, String> {
    let letters = Journal::read_dead_letters(dir).map_err(|e| e.to_string())?;
    Ok(letters
        .into_iter()
        .filter(|l| filter.picks(&l.entry))
        .collect())
}

fn letters(dir: &Path, json: bool, filter: &Filter) -> Result<ExitCode, String> {
    let letters = chosen(dir, filter)?;
    if json {
        let all: Vec<Json> = letters.iter().map(DeadLetter::to_json).collect();
        println!("{}", json!({ "ok": true, "dir": dir, "dead_letters": all }));
        return Ok(ExitCode::SUCCESS);
    }
    for l in &letters {
        let e = &l.entry;
        println!(
            "#{} {} {} {}: {}",
            e.seq,
            e.table,
            e.key,
            e.op.name(),
            l.error
        );
    }
    println!("{} dead letter(s)", letters.len());
    Ok(ExitCode::SUCCESS)
}

fn export(dir: &Path, filter: &Filter) -> Result<ExitCode, String> {
    for l in chosen(dir, filter)? {
        println!("{}", l.to_json());
    }
    Ok(ExitCode::SUCCESS)
}

async fn requeue(dir: &Path, json: bool, filter: &Filter) -> Result<ExitCode, String> {
    let found = look(dir, &mut |_| {})?;
    if let Some(pid) = found.holder {
        return Err(format!(
            "{} is open in process {pid}: requeueing appends to the journal, which only the \
             process holding its lock may do; stop it first, or requeue from the application \
             (Journal::requeue_dead_letters)",
            dir.display()
        ));
    }
    let journal = Journal::open(dir, JournalOptions::default()).map_err(|e| e.to_string())?;
    let requeued = journal
        .requeue_dead_letters(|l| filter.picks(&l.entry))
        .await;
    let closed = journal.close().await;
    let requeued = requeued
        .and_then(|n| closed.map(|()| n))
        .map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            json!({ "ok": true, "dir": dir, "requeued": requeued })
        );
    } else {
        println!(
            "requeued {requeued} dead letter(s) into {}: the application replays them when it next runs",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
