//! The history checker (`octopus_test_support::history`) on hand-made histories:
//! it accepts linearizable ones and names the key and the rule of each
//! violation a stale cache, a lost write or a resurrected row produce.

use std::collections::BTreeMap;

use octopus_test_support::history::{Op, Outcome, Record, Violation, check};

fn op(client: &str, op: Op, outcome: Outcome, invoked: u64, completed: u64) -> Record {
    Record {
        client: client.into(),
        key: 1,
        op,
        outcome,
        invoked,
        completed,
    }
}

fn run(history: &[Record], initial: Option<i64>, last: Option<i64>) -> Vec<Violation> {
    check(
        history,
        &BTreeMap::from([(1, initial)]),
        &BTreeMap::from([(1, last)]),
    )
}

fn rules(v: &[Violation]) -> Vec<&'static str> {
    v.iter().map(|v| v.rule).collect()
}

#[test]
fn linearizable_histories_pass() {
    use Outcome::Ok;
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        // Overlapping the write: either value is fine.
        op("b", Op::Read(Some(0)), Ok, 15, 25),
        op("c", Op::Read(Some(1)), Ok, 15, 25),
        op("b", Op::Read(Some(1)), Ok, 30, 40),
        op("a", Op::Delete, Ok, 50, 60),
        op("b", Op::Read(None), Ok, 70, 80),
    ];
    assert!(
        run(&h, Some(0), None).is_empty(),
        "{:?}",
        run(&h, Some(0), None)
    );
    // Two overlapping writes: either may win.
    let h = [
        op("a", Op::Put(1), Ok, 10, 30),
        op("b", Op::Put(2), Ok, 20, 40),
    ];
    assert!(run(&h, None, Some(1)).is_empty());
    assert!(run(&h, None, Some(2)).is_empty());
}

#[test]
fn a_read_of_a_superseded_value_is_stale() {
    use Outcome::Ok;
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("b", Op::Read(Some(0)), Ok, 30, 40),
    ];
    let v = run(&h, Some(0), Some(1));
    assert_eq!(rules(&v), ["stale"], "{v:?}");
    assert_eq!(v[0].key, 1);
}

#[test]
fn a_deleted_row_read_back_is_resurrected() {
    use Outcome::Ok;
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("a", Op::Delete, Ok, 30, 40),
        op("b", Op::Read(Some(1)), Ok, 50, 60),
    ];
    assert_eq!(rules(&run(&h, None, None)), ["resurrected"]);
    // ... and a final state with it is a lost delete.
    assert_eq!(rules(&run(&h, None, Some(1))), ["resurrected", "lost"]);
}

#[test]
fn a_final_state_older_than_an_acknowledged_write_is_lost() {
    use Outcome::{Ok, Refused, Unknown};
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("b", Op::Put(2), Ok, 30, 40),
    ];
    assert_eq!(rules(&run(&h, None, Some(1))), ["lost"]);
    assert_eq!(rules(&run(&h, None, None)), ["lost"]);
    // A refused write never counts; an unknown one may have happened.
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("b", Op::Put(2), Refused, 30, 40),
        op("c", Op::Put(3), Unknown, 30, 40),
    ];
    assert!(run(&h, None, Some(1)).is_empty());
    assert!(run(&h, None, Some(3)).is_empty());
    assert_eq!(rules(&run(&h, None, Some(2))), ["lost"]);
}

#[test]
fn a_value_nobody_wrote_is_a_phantom() {
    let h = [op("b", Op::Read(Some(7)), Outcome::Ok, 10, 20)];
    assert_eq!(rules(&run(&h, Some(0), Some(0))), ["phantom"]);
}

#[test]
fn a_read_cannot_see_a_write_that_began_after_it() {
    use Outcome::Ok;
    let h = [
        op("b", Op::Read(Some(1)), Ok, 10, 20),
        op("a", Op::Put(1), Ok, 30, 40),
    ];
    assert_eq!(rules(&run(&h, Some(0), Some(1))), ["future"]);
}

#[test]
fn refusals_the_history_does_not_allow_are_false_conflicts() {
    use Outcome::{Ok, Refused};
    // The row was deleted before the create began: nothing to exist.
    let h = [
        op("a", Op::Delete, Ok, 10, 20),
        op("b", Op::Exists, Refused, 30, 40),
    ];
    assert_eq!(rules(&run(&h, Some(0), None)), ["false_conflict"]);
    // A put overlapping the create: it may have come first.
    let h = [
        op("a", Op::Delete, Ok, 10, 20),
        op("c", Op::Put(5), Ok, 25, 35),
        op("b", Op::Exists, Refused, 30, 40),
    ];
    assert!(run(&h, Some(0), Some(5)).is_empty());
    // An update built on the latest value, refused with no write after it.
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("b", Op::Changed(1), Refused, 30, 40),
    ];
    assert_eq!(rules(&run(&h, Some(0), Some(1))), ["false_conflict"]);
    // Another write overlapping it explains the conflict.
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("c", Op::Put(2), Ok, 35, 45),
        op("b", Op::Changed(1), Refused, 30, 40),
    ];
    assert!(run(&h, Some(0), Some(2)).is_empty());
}

#[test]
fn a_create_acknowledged_over_a_row_is_a_missed_conflict() {
    use Outcome::Ok;
    let h = [
        op("a", Op::Put(1), Ok, 10, 20),
        op("b", Op::Created(2), Ok, 30, 40),
    ];
    assert_eq!(rules(&run(&h, Some(0), Some(2))), ["missed_conflict"]);
    // A delete that may have come first allows it.
    let h = [
        op("a", Op::Delete, Ok, 25, 35),
        op("b", Op::Created(2), Ok, 30, 40),
    ];
    assert!(run(&h, Some(0), Some(2)).is_empty());
}
