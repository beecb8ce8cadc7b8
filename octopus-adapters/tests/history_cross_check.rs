//! A cross-check of the history checker (`octopus_test_support::history`) against a
//! second, independent, brute-force definition of linearizability, on many
//! small random single-key histories.
//!
//! The brute force searches every order of the operations that happened
//! (acknowledged ones always, unknown writes at any point after their
//! invocation or not at all, refused writes never) that respects real time
//! (`a` before `b` when `a` completed before `b` was invoked), applied to a
//! register starting at the initial state: reads return the current state,
//! an acknowledged create meets an empty key (an unknown one too if it
//! happened), updates and deletes apply unconditionally, `Exists` meets a
//! row, `Changed(x)` read `x` and then, later in its own interval, met a
//! state other than `x` (the read it was built on, then the conflict), and
//! the state after everything is the final state.
//!
//! 1. Soundness: a history the brute force linearizes gets no violation
//!    from the checker; a counterexample is printed minimized and fails.
//! 2. Completeness (reported, not failed): the histories the brute force
//!    cannot linearize that the checker accepts are counted, the smallest
//!    printed; every rule of the checker must fire on some history the
//!    brute force rejects too.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use octopus_test_support::Rng;
use octopus_test_support::history::{Op, Outcome, Record, check};

/// Histories generated.
const HISTORIES: usize = 100_000;
/// The time grid: invocations in `1..=10`, intervals up to 4 long.
const GRID: u64 = 10;
/// Unknown writes take effect before this time, when they do.
const LATEST: u64 = GRID + 6;
/// A value no write writes.
const NEVER: i64 = 99;
/// Every rule of the checker.
const RULES: &str = "stale resurrected phantom future lost false_conflict missed_conflict";

/// One key's history, with its initial and final states.
#[derive(Clone)]
struct History {
    ops: Vec<Record>,
    initial: Option<i64>,
    last: Option<i64>,
}

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "  initial {:?}, final {:?}", self.initial, self.last)?;
        for r in &self.ops {
            let (op, outcome) = (format!("{:?}", r.op), format!("{:?}", r.outcome));
            let end = (r.completed != u64::MAX).then(|| r.completed.to_string());
            let end = end.as_deref().unwrap_or("inf");
            write!(
                f,
                "\n    {:4} {op:14} {outcome:8} {}..{end}",
                r.client, r.invoked
            )?;
        }
        Ok(())
    }
}

/// What one step of a linearization requires of the state and leaves.
#[derive(Clone, Copy)]
enum Step {
    /// An update or a delete: sets the state.
    Set(Option<i64>),
    /// A create: the key is empty; then holds the value.
    Create(i64),
    /// A read: the state is this.
    Is(Option<i64>),
    /// A create refused with `AlreadyExists`: the key holds a row.
    Present,
    /// The conflict of `Changed(x)`: the state is no longer `Some(x)`.
    Not(i64),
}

impl Step {
    /// The state after the step, or `None` where it cannot happen.
    fn apply(self, state: Option<i64>) -> Option<Option<i64>> {
        match self {
            Step::Set(v) => Some(v),
            Step::Create(v) => state.is_none().then_some(Some(v)),
            Step::Is(v) => (state == v).then_some(state),
            Step::Present => state.is_some().then_some(state),
            Step::Not(x) => (state != Some(x)).then_some(state),
        }
    }
}

/// A step with its real-time window and whether it must happen.
struct Event {
    step: Step,
    invoked: u64,
    completed: u64,
    required: bool,
    /// A step of the same operation that comes first.
    after: Option<usize>,
}

/// The steps of a history: acknowledged operations, refusals that say
/// what the state was, and unknown writes (optional, unbounded in time).
fn events(h: &History) -> Vec<Event> {
    let mut out = Vec::new();
    for r in &h.ops {
        let event = |step, required, after| Event {
            step,
            invoked: r.invoked,
            completed: r.completed,
            required,
            after,
        };
        let ok = r.outcome == Outcome::Ok;
        let (step, required) = match (&r.op, r.outcome) {
            (Op::Read(v), Outcome::Ok) => (Step::Is(*v), true),
            (Op::Read(_), _) | (Op::Put(_) | Op::Created(_) | Op::Delete, Outcome::Refused) => {
                continue;
            }
            (Op::Put(v), _) => (Step::Set(Some(*v)), ok),
            (Op::Delete, _) => (Step::Set(None), ok),
            (Op::Created(v), _) => (Step::Create(*v), ok),
            (Op::Exists, _) => (Step::Present, true),
            (Op::Changed(x), _) => {
                out.push(event(Step::Is(Some(*x)), true, None));
                out.push(event(Step::Not(*x), true, Some(out.len() - 1)));
                continue;
            }
        };
        out.push(event(step, required, None));
    }
    out
}

/// Whether some real-time order of the history's steps explains it.
fn linearizable(h: &History) -> bool {
    let ev = events(h);
    assert!(ev.len() <= 32, "too many steps for the brute force");
    // Only required steps order others: an unknown write may take effect
    // long after its client gave up.
    let mask = |f: &dyn Fn(&Event) -> bool| {
        (ev.iter().enumerate()).fold(0u32, |m, (i, e)| if f(e) { m | 1 << i } else { m })
    };
    let preds: Vec<u32> = (ev.iter())
        .map(|e| mask(&|a| a.required && a.completed < e.invoked) | e.after.map_or(0, |a| 1 << a))
        .collect();
    let need = mask(&|e| e.required);
    let mut failed = HashSet::new();
    search(&ev, &preds, need, h.last, 0, h.initial, &mut failed)
}

fn search(
    ev: &[Event], preds: &[u32], need: u32, last: Option<i64>, done: u32, state: Option<i64>,
    failed: &mut HashSet<(u32, Option<i64>)>,
) -> bool {
    if done & need == need && state == last {
        return true;
    }
    if !failed.insert((done, state)) {
        return false;
    }
    ev.iter().enumerate().any(|(i, e)| {
        done & (1 << i) == 0
            && preds[i] & !done == 0
            && e.step
                .apply(state)
                .is_some_and(|next| search(ev, preds, need, last, done | 1 << i, next, failed))
    })
}

/// The rules the checker reports.
fn rules(h: &History) -> Vec<&'static str> {
    let v = check(
        &h.ops,
        &BTreeMap::from([(1, h.initial)]),
        &BTreeMap::from([(1, h.last)]),
    );
    v.iter().map(|v| v.rule).collect()
}

/// A value: mostly one some operation writes (or `None`, or the initial
/// one), occasionally one nothing writes.
fn pick(rng: &mut Rng, n: usize) -> Option<i64> {
    if rng.chance(5) {
        return Some(NEVER);
    }
    match rng.below(n as u64 + 2) {
        0 => None,
        k => Some(k as i64 - 1),
    }
}

/// A random history, mostly the record of a random linearizable run (each
/// operation takes effect at a random point of its interval, unknown ones
/// anywhere after their invocation or never) with noise in what it saw.
fn generate(rng: &mut Rng) -> History {
    let initial = rng.chance(50).then_some(0);
    let n = 1 + rng.below(7) as usize;
    let mut ops = Vec::new();
    // (point, operation, first or second step), in hundredths.
    let mut points = Vec::new();
    for i in 0..n {
        let invoked = 1 + rng.below(GRID);
        let mut completed = invoked + rng.below(5);
        let kind = rng.below(100);
        let op = match kind {
            0..25 => Op::Put(i as i64 + 1),
            25..45 => Op::Created(i as i64 + 1),
            45..60 => Op::Delete,
            60..90 => Op::Read(None),
            _ => Op::Changed(0),
        };
        // Writes: acknowledged, unknown or refused; reads sometimes unknown.
        let outcome = match rng.below(100) {
            0..10 if (60..90).contains(&kind) => Outcome::Unknown,
            _ if kind >= 60 => Outcome::Ok,
            0..55 => Outcome::Ok,
            55..80 => Outcome::Unknown,
            _ => Outcome::Refused,
        };
        let (from, to) = (invoked * 100, completed * 100);
        let mut at = || from + rng.below(to - from + 1);
        match outcome {
            Outcome::Ok if matches!(op, Op::Changed(_)) => {
                let (a, b) = (at(), at());
                points.extend([(a.min(b), i, 0), (a.max(b), i, 1)]);
            }
            Outcome::Ok => points.push((at(), i, 0)),
            Outcome::Unknown if !matches!(op, Op::Read(_)) => {
                if rng.chance(60) {
                    points.push((from + rng.below(LATEST * 100 - from), i, 0));
                }
                if rng.chance(50) {
                    completed = u64::MAX;
                }
            }
            _ => {}
        }
        ops.push(Record {
            client: format!("c{i}"),
            key: 1,
            op,
            outcome,
            invoked,
            completed,
        });
    }
    points.sort();
    let mut state = initial;
    let mut seen = vec![None; n];
    for (_, i, second) in points {
        let r = &mut ops[i];
        match r.op {
            Op::Put(v) => state = Some(v),
            Op::Created(v) if state.is_none() => state = Some(v),
            Op::Created(v) if r.outcome == Outcome::Ok => {
                if rng.chance(85) {
                    (r.op, r.outcome) = (Op::Exists, Outcome::Refused);
                } else {
                    state = Some(v);
                }
            }
            Op::Delete if state.is_none() && r.outcome == Outcome::Ok && rng.chance(85) => {
                r.op = Op::Read(None);
            }
            Op::Delete => state = None,
            Op::Read(_) => r.op = Op::Read(if rng.chance(80) { state } else { pick(rng, n) }),
            Op::Changed(_) if second == 0 => seen[i] = state,
            Op::Changed(_) => {
                let x = seen[i].or_else(|| pick(rng, n)).unwrap_or(NEVER);
                (r.op, r.outcome) = (Op::Changed(x), Outcome::Refused);
            }
            _ => {}
        }
    }
    let last = if rng.chance(85) { state } else { pick(rng, n) };
    History { ops, initial, last }
}

/// Removes operations, and unbinds unknown writes' completions, while
/// `keep` holds.
fn minimize(mut h: History, keep: impl Fn(&History) -> bool) -> History {
    'again: loop {
        let n = h.ops.len();
        for i in 0..2 * n {
            let mut t = h.clone();
            match t.ops.get_mut(i.wrapping_sub(n)) {
                None => _ = t.ops.remove(i),
                Some(r) if r.outcome == Outcome::Unknown && r.completed != u64::MAX => {
                    r.completed = u64::MAX;
                }
                Some(_) => continue,
            }
            if keep(&t) {
                h = t;
                continue 'again;
            }
        }
        return h;
    }
}

#[test]
fn the_checker_agrees_with_brute_force_linearizability() {
    let start = Instant::now();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    // The smallest false alarm per set of rules reported.
    let mut alarms: BTreeMap<Vec<&str>, History> = BTreeMap::new();
    let mut alarm_count = 0;
    let mut accepted: Vec<History> = Vec::new();
    let mut accepted_count = 0;
    let mut confirmed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut linearizable_count = 0;
    for _ in 0..HISTORIES {
        let h = generate(&mut rng);
        let found = rules(&h);
        if linearizable(&h) {
            linearizable_count += 1;
            if !found.is_empty() {
                alarm_count += 1;
                let m = minimize(h, |t| linearizable(t) && !rules(t).is_empty());
                let old = alarms.entry(rules(&m)).or_insert_with(|| m.clone());
                if m.ops.len() < old.ops.len() {
                    *old = m;
                }
            }
        } else if found.is_empty() {
            accepted_count += 1;
            if accepted.len() < 300 {
                accepted.push(h);
            }
        } else {
            for rule in found {
                *confirmed.entry(rule).or_default() += 1;
            }
        }
    }
    let mut smallest: Vec<History> = accepted
        .into_iter()
        // Without records a key's final state goes unchecked: keep one.
        .map(|h| {
            minimize(h, |t| {
                !t.ops.is_empty() && !linearizable(t) && rules(t).is_empty()
            })
        })
        .collect();
    smallest.sort_by_key(|h| (h.ops.len(), h.to_string()));
    // One example per shape: the kinds of operations, values and times aside.
    let mut shapes = HashSet::new();
    smallest.retain(|h| {
        let kind = |r: &Record| format!("{:?}", r.op).split('(').next().map(str::to_owned);
        let ops: Vec<_> = h.ops.iter().map(|r| (kind(r), r.outcome)).collect();
        shapes.insert(format!("{ops:?}"))
    });
    println!(
        "{HISTORIES} histories in {:.2?}: {linearizable_count} linearizable, {alarm_count} of them with violations; \
         {} not linearizable, {accepted_count} of them accepted by the checker",
        start.elapsed(),
        HISTORIES - linearizable_count
    );
    println!("rules confirmed by the brute force (histories): {confirmed:?}");
    for h in smallest.iter().take(3) {
        println!("not linearizable, yet accepted:\n{h}");
    }
    let unreached: Vec<&str> = RULES
        .split(' ')
        .filter(|r| !confirmed.contains_key(r))
        .collect();
    let report: Vec<String> = alarms
        .iter()
        .map(|(rules, h)| format!("{rules:?} on a linearizable history:\n{h}"))
        .collect();
    assert!(
        alarms.is_empty(),
        "{alarm_count} false alarms; the smallest per rule set, minimized:\n{}",
        report.join("\n")
    );
    assert!(
        unreached.is_empty(),
        "no non-linearizable history reached {unreached:?}"
    );
}
