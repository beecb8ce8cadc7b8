//! `Change::check_version` (what a store can decide from a locking read of
//! the key and version alone) never disagrees with `Change::check` (the
//! whole stored row): over every precondition, stored row and change row,
//! for a versioned and an unversioned model, it gives the same outcome or
//! asks for the whole row.

use octopus::{Change, Key, Model, Precondition, Record, Schema};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "versioned")]
struct Versioned {
    #[octopus(key)]
    id: u64,
    name: String,
    #[octopus(version)]
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "plain")]
struct Plain {
    #[octopus(key)]
    id: u64,
    name: String,
}

const PRECONDITIONS: [Precondition; 8] = [
    Precondition::Absent,
    Precondition::Exists,
    Precondition::Version(1),
    Precondition::Version(2),
    Precondition::OlderThan(2),
    Precondition::OlderThan(3),
    Precondition::Always,
    Precondition::Version(3),
];

/// The outcome as a comparable string.
fn shown(r: &octopus::Result<()>) -> String {
    format!("{r:?}")
}

/// Checks every combination of `rows` (as stored, and as the change's
/// row) and preconditions; returns how many `check_version` decided.
fn agree(
    schema: &'static Schema, rows: &[Option<Record>], version: impl Fn(&Record) -> Option<u64>,
) -> usize {
    let mut decided = 0;
    for stored in rows {
        for row in rows {
            for precondition in PRECONDITIONS {
                let change = Change {
                    key: Key::UInt(7),
                    precondition,
                    row: row.clone(),
                };
                let whole = change.check(schema, stored.as_ref());
                let light = change.check_version(schema, stored.as_ref().map(&version));
                if let Some(light) = light {
                    decided += 1;
                    assert_eq!(
                        shown(&light),
                        shown(&whole),
                        "{precondition:?}, stored {stored:?}, row {row:?}"
                    );
                } else {
                    assert!(
                        whole.is_ok() || row.is_some(),
                        "undecided only where the row may be stored: {precondition:?}, stored {stored:?}"
                    );
                }
            }
        }
    }
    decided
}

#[test]
fn a_versioned_models_check_by_version_agrees_with_the_whole_row() {
    let rows: Vec<Option<Record>> = [None]
        .into_iter()
        .chain(
            [(1, "a"), (2, "a"), (2, "b"), (3, "c")].map(|(version, name)| {
                Some(
                    Versioned {
                        id: 7,
                        name: name.into(),
                        version,
                    }
                    .to_record()
                    .unwrap(),
                )
            }),
        )
        .collect();
    let decided = agree(Versioned::SCHEMA, &rows, |r| {
        octopus::version_of(Versioned::SCHEMA, r)
    });
    // Most combinations need no whole row.
    assert!(
        decided > rows.len() * rows.len() * PRECONDITIONS.len() * 3 / 4,
        "{decided}"
    );
}

#[test]
fn an_unversioned_models_check_by_presence_agrees_with_the_whole_row() {
    let rows: Vec<Option<Record>> = [None]
        .into_iter()
        .chain(["a", "b"].map(|name| {
            Some(
                Plain {
                    id: 7,
                    name: name.into(),
                }
                .to_record()
                .unwrap(),
            )
        }))
        .collect();
    let decided = agree(Plain::SCHEMA, &rows, |_| None);
    assert!(decided > 0);
}
