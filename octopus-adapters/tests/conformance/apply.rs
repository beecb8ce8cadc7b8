//! The conformance cases of `Store::apply` (conditional changes, as journal
//! replay sends them) and `Store::validate` (what a write would refuse).

use octopus::{Change, Error, Key, Model, Precondition, Record, Schema, Store};
use uuid::Uuid;

use super::models::{Book, Measurement, Tag};
use super::suite::{Fixture, FloatPolicy};

/// A change's result, comparable in assertions.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written,
    AlreadyExists(String),
    NotFound(String),
    Conflict { expected: u64, actual: u64 },
    Other(String),
}

fn outcome(result: &octopus::Result<()>, table: &str) -> Outcome {
    match result {
        Ok(()) => Outcome::Written,
        Err(Error::AlreadyExists { table: t, key }) if *t == table => {
            Outcome::AlreadyExists(key.clone())
        }
        Err(Error::NotFound { table: t, key }) if *t == table => Outcome::NotFound(key.clone()),
        Err(Error::Conflict {
            table: t,
            expected,
            actual,
            ..
        }) if *t == table => Outcome::Conflict {
            expected: *expected,
            actual: *actual,
        },
        Err(other) => Outcome::Other(format!("{other:?}")),
    }
}

/// Applies `changes` to `M`'s table; the call itself must succeed.
async fn apply<M: Model>(f: &Fixture, changes: &[Change]) -> Vec<Outcome> {
    let results = f.store.apply(M::SCHEMA, changes).await.unwrap();
    assert_eq!(results.len(), changes.len(), "one result per change");
    results
        .iter()
        .map(|r| outcome(r, M::SCHEMA.table()))
        .collect()
}

async fn ready<'f>(f: &'f Fixture, schema: &'static Schema) -> &'f dyn Store {
    f.store.ensure_schema(schema).await.unwrap();
    &*f.store
}

fn book(n: u128, title: &str, version: u32) -> Book {
    Book {
        id: Uuid::from_u128(n),
        title: title.into(),
        author: None,
        version,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000 + i64::from(version),
    }
}

fn key_of_book(b: &Book) -> Key {
    Key::from(b.id)
}

fn change(key: Key, precondition: Precondition, row: Option<Record>) -> Change {
    Change {
        key,
        precondition,
        row,
    }
}

fn put(b: &Book, precondition: Precondition) -> Change {
    change(key_of_book(b), precondition, Some(b.to_record().unwrap()))
}

fn delete(b: &Book, precondition: Precondition) -> Change {
    change(key_of_book(b), precondition, None)
}

async fn seed(f: &Fixture, books: &[&Book]) {
    let store = ready(f, Book::SCHEMA).await;
    let rows: Vec<Record> = books.iter().map(|b| b.to_record().unwrap()).collect();
    store.upsert_many(Book::SCHEMA, &rows).await.unwrap();
}

async fn stored(f: &Fixture, b: &Book) -> Option<Book> {
    f.store
        .get(Book::SCHEMA, &key_of_book(b))
        .await
        .unwrap()
        .map(|r| Book::from_record(r).unwrap())
}

fn shown(b: &Book) -> String {
    key_of_book(b).to_string()
}

pub async fn apply_create_on_an_absent_key_writes(f: &Fixture) {
    ready(f, Book::SCHEMA).await;
    let new = book(1, "Dune", 1);
    let out = apply::<Book>(f, &[put(&new, Precondition::Absent)]).await;
    assert_eq!(out, [Outcome::Written]);
    assert_eq!(stored(f, &new).await, Some(new));
}

pub async fn apply_create_of_a_present_key_keeps_the_row(f: &Fixture) {
    let old = book(1, "Dune", 3);
    seed(f, &[&old]).await;
    let out = apply::<Book>(f, &[put(&book(1, "Other", 1), Precondition::Absent)]).await;
    assert_eq!(out, [Outcome::AlreadyExists(shown(&old))]);
    assert_eq!(stored(f, &old).await, Some(old));
}

pub async fn apply_update_at_the_expected_version_writes(f: &Fixture) {
    seed(f, &[&book(1, "Emma", 1)]).await;
    let next = book(1, "Emma (2nd ed.)", 2);
    let out = apply::<Book>(f, &[put(&next, Precondition::Version(1))]).await;
    assert_eq!(out, [Outcome::Written]);
    assert_eq!(stored(f, &next).await, Some(next));
}

pub async fn apply_update_at_another_version_is_a_conflict(f: &Fixture) {
    let current = book(1, "Emma", 2);
    seed(f, &[&current]).await;
    let stale = book(1, "Emma, abridged", 2);
    let out = apply::<Book>(f, &[put(&stale, Precondition::Version(1))]).await;
    assert_eq!(
        out,
        [Outcome::Conflict {
            expected: 1,
            actual: 2
        }]
    );
    assert_eq!(stored(f, &current).await, Some(current));
}

/// Replaying a batch again (after a crash between applying it and its
/// checkpoint) finds its rows already stored: they pass whatever their
/// precondition; a row of the same version with other values does not.
pub async fn apply_of_a_change_already_stored_passes(f: &Fixture) {
    let applied = book(1, "Emma", 2);
    let other = book(2, "Persuasion", 2);
    let fresh = book(3, "Sanditon", 1);
    let created = book(4, "Lady Susan", 1);
    seed(f, &[&applied, &other, &fresh, &created]).await;
    let rival = book(2, "Persuasion, abridged", 2);
    let next = book(3, "Sanditon", 2);
    let out = apply::<Book>(
        f,
        &[
            put(&applied, Precondition::Version(1)),
            put(&rival, Precondition::Version(1)),
            put(&next, Precondition::Version(1)),
            put(&created, Precondition::Absent),
        ],
    )
    .await;
    assert_eq!(
        out,
        [
            Outcome::Written,
            Outcome::Conflict {
                expected: 1,
                actual: 2
            },
            Outcome::Written,
            Outcome::Written,
        ]
    );
    assert_eq!(stored(f, &applied).await, Some(applied));
    assert_eq!(stored(f, &other).await, Some(other));
    assert_eq!(stored(f, &next).await, Some(next));
    assert_eq!(stored(f, &created).await, Some(created));
}

pub async fn apply_update_of_a_missing_key_is_not_found(f: &Fixture) {
    ready(f, Book::SCHEMA).await;
    let ghost = book(9, "nowhere", 4);
    let out = apply::<Book>(f, &[put(&ghost, Precondition::Version(3))]).await;
    assert_eq!(out, [Outcome::NotFound(shown(&ghost))]);
    assert_eq!(stored(f, &ghost).await, None, "an update never inserts");
}

pub async fn apply_delete_checks_the_version(f: &Fixture) {
    let (kept, gone) = (book(1, "kept", 2), book(2, "gone", 2));
    seed(f, &[&kept, &gone]).await;
    let out = apply::<Book>(
        f,
        &[
            delete(&kept, Precondition::Version(1)),
            delete(&gone, Precondition::Version(2)),
        ],
    )
    .await;
    let conflict = Outcome::Conflict {
        expected: 1,
        actual: 2,
    };
    assert_eq!(out, [conflict, Outcome::Written]);
    assert_eq!(stored(f, &kept).await, Some(kept), "the row stays");
    assert_eq!(stored(f, &gone).await, None);
}

pub async fn apply_unconditional_delete_of_a_missing_key_is_ok(f: &Fixture) {
    ready(f, Book::SCHEMA).await;
    let never = book(7, "never there", 1);
    let out = apply::<Book>(f, &[delete(&never, Precondition::Always)]).await;
    assert_eq!(out, [Outcome::Written]);
    assert_eq!(stored(f, &never).await, None);
}

pub async fn apply_exists_on_an_unversioned_model(f: &Fixture) {
    let store = ready(f, Tag::SCHEMA).await;
    let tag = |name: &str, uses: u64| Tag {
        name: name.into(),
        uses,
    };
    store
        .insert(Tag::SCHEMA, &tag("there", 1).to_record().unwrap())
        .await
        .unwrap();
    let put_tag = |t: Tag, p| change(Key::from(&t.name), p, Some(t.to_record().unwrap()));
    let out = apply::<Tag>(
        f,
        &[
            put_tag(tag("there", 2), Precondition::Exists),
            put_tag(tag("missing", 2), Precondition::Exists),
            // No version column: a version precondition has nothing to
            // compare, so only the row's presence counts.
            put_tag(tag("there", 3), Precondition::Version(99)),
        ],
    )
    .await;
    let not_found = Outcome::NotFound(Key::from("missing").to_string());
    assert_eq!(out, [Outcome::Written, not_found, Outcome::Written]);
    let (there, missing) = (Key::from("there"), Key::from("missing"));
    let stored = store.get(Tag::SCHEMA, &there).await.unwrap();
    assert_eq!(stored, Some(tag("there", 3).to_record().unwrap()));
    assert_eq!(store.get(Tag::SCHEMA, &missing).await.unwrap(), None);
}

pub async fn apply_mixed_batch_writes_only_passing_changes(f: &Fixture) {
    let (present, v2, doomed, survivor) = (
        book(1, "present", 1),
        book(2, "at v2", 2),
        book(3, "doomed", 1),
        book(4, "survivor", 5),
    );
    seed(f, &[&present, &v2, &doomed, &survivor]).await;
    let (created, updated) = (book(10, "created", 1), book(2, "at v3", 3));
    let (forced, ghost) = (book(4, "forced", 9), book(11, "ghost", 2));
    let changes = [
        put(&created, Precondition::Absent),
        put(&book(1, "dup", 1), Precondition::Absent),
        put(&updated, Precondition::Version(2)),
        delete(&survivor, Precondition::Version(4)),
        delete(&doomed, Precondition::Version(1)),
        put(&ghost, Precondition::Version(1)),
        put(&forced, Precondition::Always),
    ];
    let out = apply::<Book>(f, &changes).await;
    let expected = [
        Outcome::Written,
        Outcome::AlreadyExists(shown(&present)),
        Outcome::Written,
        Outcome::Conflict {
            expected: 4,
            actual: 5,
        },
        Outcome::Written,
        Outcome::NotFound(shown(&ghost)),
        Outcome::Written,
    ];
    assert_eq!(out, expected);
    assert_eq!(stored(f, &created).await, Some(created));
    assert_eq!(stored(f, &present).await, Some(present));
    assert_eq!(stored(f, &updated).await, Some(updated));
    assert_eq!(stored(f, &doomed).await, None);
    assert_eq!(stored(f, &ghost).await, None);
    assert_eq!(stored(f, &forced).await, Some(forced));
}

pub async fn apply_large_batch_works(f: &Fixture) {
    // 3000 changes: more than one statement's worth in every SQL store.
    let seeded: Vec<Book> = (0..2500).map(|i| book(i, &format!("b{i}"), 1)).collect();
    seed(f, &seeded.iter().collect::<Vec<_>>()).await;
    let mut changes = Vec::new();
    let mut expected = Vec::new();
    let mut after: Vec<(Book, bool)> = Vec::new();
    for b in &seeded {
        let i = b.id.as_u128();
        let next = book(i, &format!("b{i} v2"), 2);
        let (c, o, kept) = match i % 3 {
            0 => (
                put(&next, Precondition::Version(1)),
                Outcome::Written,
                (next, true),
            ),
            1 => {
                let conflict = Outcome::Conflict {
                    expected: 5,
                    actual: 1,
                };
                (
                    put(&next, Precondition::Version(5)),
                    conflict,
                    (b.clone(), true),
                )
            }
            _ => (
                delete(b, Precondition::Version(1)),
                Outcome::Written,
                (b.clone(), false),
            ),
        };
        changes.push(c);
        expected.push(o);
        after.push(kept);
    }
    for i in 2500..3000 {
        let new = book(i, "new", 1);
        changes.push(put(&new, Precondition::Absent));
        expected.push(Outcome::Written);
        after.push((new, true));
    }
    let out = apply::<Book>(f, &changes).await;
    assert!(out == expected, "results differ from the expected ones");
    let keys: Vec<Key> = after.iter().map(|(b, _)| key_of_book(b)).collect();
    let rows = f.store.get_many(Book::SCHEMA, &keys).await.unwrap();
    for ((b, present), row) in after.iter().zip(rows) {
        let want = present.then(|| b.to_record().unwrap());
        assert_eq!(row, want, "book {}", b.id.as_u128());
    }
}

pub async fn validate_refuses_what_a_write_would_refuse(f: &Fixture) {
    ready(f, Measurement::SCHEMA).await;
    ready(f, Tag::SCHEMA).await;
    let measurement = |id: i32, value: f64| {
        let m = Measurement {
            id,
            value,
            maybe: None,
        };
        m.to_record().unwrap()
    };
    let long_key = Tag {
        name: "k".repeat(769),
        uses: 1,
    };
    let mut null_in_not_null = measurement(4, 1.0);
    null_in_not_null.values_mut()[1] = octopus::Value::Null;
    // MySQL is the store that holds only finite floats and text keys of at
    // most 768 characters.
    let mysql = f.floats == FloatPolicy::NonFiniteRefused;
    let cases: [(&str, &'static Schema, Record, bool); 5] = [
        ("good", Measurement::SCHEMA, measurement(1, 1.5), false),
        (
            "NaN",
            Measurement::SCHEMA,
            measurement(2, f64::NAN),
            f.floats != FloatPolicy::AllStored,
        ),
        (
            "inf",
            Measurement::SCHEMA,
            measurement(3, f64::INFINITY),
            mysql,
        ),
        ("NULL", Measurement::SCHEMA, null_in_not_null, true),
        (
            "long key",
            Tag::SCHEMA,
            long_key.to_record().unwrap(),
            mysql,
        ),
    ];
    for (what, schema, record, refused) in cases {
        let validated = f.store.validate(schema, &record);
        let inserted = f.store.insert(schema, &record).await;
        assert_eq!(validated.is_err(), refused, "{what}: {validated:?}");
        match (&validated, &inserted) {
            (Ok(()), Ok(())) => {}
            (Err(v), Err(i)) => assert_eq!(
                std::mem::discriminant(v),
                std::mem::discriminant(i),
                "{what}: validate said {v:?}, insert said {i:?}"
            ),
            _ => panic!("{what}: validate said {validated:?}, insert said {inserted:?}"),
        }
    }
}
