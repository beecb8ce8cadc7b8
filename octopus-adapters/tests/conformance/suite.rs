//! The conformance suite: the `Store` contract, checked through `Dao` and the
//! raw trait, the same for every store.

use std::sync::Arc;

use octopus::{Dao, Deletion, Error, Key, Model, Plan, Record, Store, Value};
use uuid::Uuid;

use super::models::{Book, Counter, Everything, Measurement, Tag};

// The cases of `Store::apply` and `Store::validate` live in their own file.
pub use super::apply::*;

/// What a store does with floats that are not finite numbers. A refused
/// value is an `Error::Invalid` naming the column, and nothing is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloatPolicy {
    /// NaN and infinities are stored and read back.
    AllStored,
    /// Infinities are stored; NaN is refused.
    NanRefused,
    /// Only finite floats are stored.
    NonFiniteRefused,
}

/// A store under test, plus whatever keeps it alive (a temp dir, a server).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub floats: FloatPolicy,
    /// Whether the store can list its rows (caches like memcached cannot).
    pub scans: bool,
    pub _guard: Box<dyn std::any::Any + Send>,
}

async fn dao<T: Model>(f: &Fixture) -> Dao<T> {
    Dao::open(Arc::new(Plan::from_arc(f.store.clone())))
        .await
        .expect("ensure_schema")
}

pub async fn crud_round_trip(f: &Fixture) {
    let books = dao::<Book>(f).await;
    let mut book = Book::new("Dune");
    books.create(&mut book).await.unwrap();
    assert!(!book.id.is_nil(), "a nil key gets a UUIDv7");
    assert_eq!(book.id.get_version_num(), 7);
    assert_eq!(book.version, 1);
    assert!(book.created_at > 0 && book.created_at == book.updated_at);

    assert_eq!(books.read(book.id).await.unwrap(), Some(book.clone()));

    let created = book.created_at;
    book.author = Some("Frank Herbert".into());
    std::thread::sleep(std::time::Duration::from_millis(2));
    books.update(&mut book).await.unwrap();
    assert_eq!(book.version, 2);
    assert!(book.updated_at > created);
    let stored = books.read(book.id).await.unwrap().unwrap();
    assert_eq!(stored, book);
    assert_eq!(
        stored.created_at, created,
        "update never changes created_at"
    );

    assert_eq!(books.delete(book.id).await.unwrap(), Deletion::Deleted);
    assert_eq!(books.read(book.id).await.unwrap(), None);
}

pub async fn read_missing_is_none(f: &Fixture) {
    let books = dao::<Book>(f).await;
    assert_eq!(books.read(Uuid::now_v7()).await.unwrap(), None);
    let tags = dao::<Tag>(f).await;
    assert_eq!(tags.read("nobody").await.unwrap(), None);
}

pub async fn duplicate_create_is_refused_and_writes_nothing(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    tags.create(&mut Tag {
        name: "rust".into(),
        uses: 1,
    })
    .await
    .unwrap();
    let mut again = Tag {
        name: "rust".into(),
        uses: 99,
    };
    let err = tags.create(&mut again).await.unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { table: "tag", key } if key == "\"rust\""),
        "{err:?}"
    );
    assert_eq!(tags.read("rust").await.unwrap().unwrap().uses, 1);
}

pub async fn update_of_missing_key_is_not_found(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    let err = tags
        .update(&mut Tag {
            name: "ghost".into(),
            uses: 1,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { table: "tag", .. }),
        "{err:?}"
    );
    assert_eq!(
        tags.read("ghost").await.unwrap(),
        None,
        "update never inserts"
    );

    let books = dao::<Book>(f).await;
    let mut missing = Book::new("nowhere");
    missing.id = Uuid::now_v7();
    missing.version = 3;
    let err = books.update(&mut missing).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { table: "books", .. }),
        "{err:?}"
    );
    assert_eq!(
        missing.version, 3,
        "a failed update leaves the model as it was"
    );
}

pub async fn stale_version_is_a_conflict_and_writes_nothing(f: &Fixture) {
    let books = dao::<Book>(f).await;
    let mut mine = Book::new("Emma");
    books.create(&mut mine).await.unwrap();
    let mut theirs = mine.clone();
    theirs.title = "Emma (2nd ed.)".into();
    books.update(&mut theirs).await.unwrap();

    mine.title = "Emma, abridged".into();
    let before = mine.clone();
    let err = books.update(&mut mine).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                table: "books",
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        mine, before,
        "a conflicting update leaves the model as it was"
    );
    assert_eq!(books.read(mine.id).await.unwrap().unwrap(), theirs);
}

pub async fn delete_of_missing_key_is_not_found_not_an_error(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    assert_eq!(
        tags.delete("never-there").await.unwrap(),
        Deletion::NotFound
    );
    tags.create(&mut Tag {
        name: "once".into(),
        uses: 0,
    })
    .await
    .unwrap();
    assert_eq!(tags.delete("once").await.unwrap(), Deletion::Deleted);
    assert_eq!(
        tags.delete("once").await.unwrap(),
        Deletion::NotFound,
        "a second delete finds nothing"
    );
}

pub async fn every_field_type_round_trips(f: &Fixture) {
    let all = dao::<Everything>(f).await;
    let mut plain = Everything::plain(1);
    let mut extreme = Everything::extremes(2);
    let mut lows = Everything::extremes(i64::MIN);
    lows.big = i64::MAX;
    lows.single = f32::MIN_POSITIVE;
    lows.double = f64::MAX;
    lows.maybe_float = Some(-0.0);
    if f.floats == FloatPolicy::NonFiniteRefused {
        extreme.maybe_float = Some(f64::MIN);
    } else {
        lows.double = f64::NEG_INFINITY;
    }
    for m in [&mut plain, &mut extreme, &mut lows] {
        all.create(m).await.unwrap();
        assert_eq!(all.read(m.id).await.unwrap().as_ref(), Some(&*m));
    }
    // Skipped fields are not stored: they read back as their Default.
    let mut scratch = Everything::plain(3);
    scratch.scratch = 7;
    all.create(&mut scratch).await.unwrap();
    assert_eq!(all.read(3).await.unwrap().unwrap().scratch, 0);
}

pub async fn non_finite_floats_follow_the_store_policy(f: &Fixture) {
    let m = dao::<Measurement>(f).await;
    let mut nan = Measurement {
        id: 1,
        value: f64::NAN,
        maybe: Some(f32::NAN),
    };
    let mut inf = Measurement {
        id: 2,
        value: f64::INFINITY,
        maybe: Some(f32::NEG_INFINITY),
    };
    let refused = |err: Error, what: &str| {
        assert!(
            matches!(&err, Error::Invalid { what: w }
                if w.contains("`measurements`") && w.contains("`value`") && w.contains(what)),
            "{err:?}"
        );
    };
    match f.floats {
        FloatPolicy::AllStored => {
            m.create(&mut nan).await.unwrap();
            let back = m.read(1).await.unwrap().unwrap();
            assert!(back.value.is_nan() && back.maybe.unwrap().is_nan());
        }
        FloatPolicy::NanRefused | FloatPolicy::NonFiniteRefused => {
            refused(m.create(&mut nan).await.unwrap_err(), "NaN");
            assert_eq!(m.read(1).await.unwrap(), None, "nothing written");
        }
    }
    match f.floats {
        FloatPolicy::AllStored | FloatPolicy::NanRefused => {
            m.create(&mut inf).await.unwrap();
            assert_eq!(m.read(2).await.unwrap().unwrap(), inf);
        }
        FloatPolicy::NonFiniteRefused => {
            refused(m.create(&mut inf).await.unwrap_err(), "inf");
            assert_eq!(m.read(2).await.unwrap(), None, "nothing written");
        }
    }
}

pub async fn u64_keys_cover_the_whole_range(f: &Fixture) {
    let counters = dao::<Counter>(f).await;
    for id in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        counters
            .create(&mut Counter { id, n: id as i64 })
            .await
            .unwrap();
    }
    for id in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        assert_eq!(
            counters.read(id).await.unwrap(),
            Some(Counter { id, n: id as i64 })
        );
    }
    // An integer literal converts to the key column's type.
    assert!(counters.read(1).await.unwrap().is_some());
    let err = counters.read("1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { what } if what.contains("counters")),
        "{err:?}"
    );
}

pub async fn string_keys_generate_and_hold_anything(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    let mut generated = Tag {
        name: String::new(),
        uses: 1,
    };
    tags.create(&mut generated).await.unwrap();
    assert!(
        Uuid::parse_str(&generated.name).is_ok(),
        "empty string key gets a UUIDv7"
    );
    for name in [
        "with space",
        "ünïcødé 🐙",
        "quote\"and'apostrophe",
        &"long".repeat(100),
    ] {
        tags.create(&mut Tag {
            name: name.into(),
            uses: 2,
        })
        .await
        .unwrap();
        assert_eq!(tags.read(name).await.unwrap().unwrap().name, name);
    }
}

pub async fn read_many_keeps_order_and_misses(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        tags.create(&mut Tag {
            name: (*name).into(),
            uses: i as u64,
        })
        .await
        .unwrap();
    }
    let got = tags.read_many(["c", "missing", "a", "c"]).await.unwrap();
    let names: Vec<Option<String>> = got.into_iter().map(|t| t.map(|t| t.name)).collect();
    assert_eq!(
        names,
        [Some("c".into()), None, Some("a".into()), Some("c".into())]
    );
    assert!(
        tags.read_many(Vec::<String>::new())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn scan_pages_in_key_order(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    if !f.scans {
        let err = f.store.scan(Tag::SCHEMA, None, 3).await.unwrap_err();
        assert!(
            matches!(&err, Error::Rejected { message, .. } if message.contains("`tag`")),
            "{err:?}"
        );
        return;
    }
    let names = ["m", "a", "z", "k", "b", "y", "c"];
    for n in names {
        tags.create(&mut Tag {
            name: n.into(),
            uses: 0,
        })
        .await
        .unwrap();
    }
    let schema = Tag::SCHEMA;
    let mut seen = Vec::new();
    let mut after: Option<Key> = None;
    loop {
        let page = f.store.scan(schema, after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        for r in &page {
            seen.push(Tag::from_record(r.clone()).unwrap().name);
        }
        after = Some(Key::Text(seen.last().unwrap().clone()));
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(seen, sorted);
}

pub async fn upsert_inserts_then_replaces(f: &Fixture) {
    let store = &f.store;
    store.ensure_schema(Tag::SCHEMA).await.unwrap();
    let rec = |uses: u64| Record::new(vec![Value::Text("up".into()), Value::UInt(uses)]);
    store.upsert(Tag::SCHEMA, &rec(1)).await.unwrap();
    store.upsert(Tag::SCHEMA, &rec(2)).await.unwrap();
    let got = store.get(Tag::SCHEMA, &Key::from("up")).await.unwrap();
    assert_eq!(got, Some(rec(2)));
}

pub async fn upsert_many_writes_every_row(f: &Fixture) {
    let store = &f.store;
    store.ensure_schema(Tag::SCHEMA).await.unwrap();
    let rec = |i: u64, uses: u64| {
        Record::new(vec![Value::Text(format!("many{i:04}")), Value::UInt(uses)])
    };
    store.upsert(Tag::SCHEMA, &rec(0, 99)).await.unwrap();
    let batch: Vec<Record> = (0..2500).map(|i| rec(i, i)).collect();
    store.upsert_many(Tag::SCHEMA, &batch).await.unwrap();
    let keys: Vec<Key> = (0..2500)
        .map(|i| Key::Text(format!("many{i:04}")))
        .collect();
    let got = store.get_many(Tag::SCHEMA, &keys).await.unwrap();
    for (i, r) in got.into_iter().enumerate() {
        assert_eq!(r, Some(rec(i as u64, i as u64)), "row {i}");
    }
}

pub async fn malformed_records_are_refused_and_write_nothing(f: &Fixture) {
    let store = &f.store;
    store.ensure_schema(Tag::SCHEMA).await.unwrap();
    // A NULL in a non-nullable column.
    let bad = Record::new(vec![Value::Text("bad".into()), Value::Null]);
    let err = store.insert(Tag::SCHEMA, &bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { what } if what.contains("`tag`") && what.contains("`uses`")),
        "{err:?}"
    );
    // A value of the wrong type, and the wrong number of values.
    let wrong = Record::new(vec![Value::Text("bad".into()), Value::Text("7".into())]);
    assert!(matches!(
        store.upsert(Tag::SCHEMA, &wrong).await,
        Err(Error::Invalid { .. })
    ));
    let short = Record::new(vec![Value::Text("bad".into())]);
    assert!(matches!(
        store.insert(Tag::SCHEMA, &short).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(
        store.get(Tag::SCHEMA, &Key::from("bad")).await.unwrap(),
        None
    );
}

pub async fn concurrent_writers_all_land(f: &Fixture) {
    let tags = dao::<Tag>(f).await;
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let tags = tags.clone();
        tasks.push(tokio::spawn(async move {
            tags.create(&mut Tag {
                name: format!("t{i:02}"),
                uses: i,
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let keys: Vec<String> = (0..64).map(|i| format!("t{i:02}")).collect();
    let got = tags.read_many(&keys).await.unwrap();
    for (i, t) in got.into_iter().enumerate() {
        assert_eq!(t.unwrap().uses, i as u64);
    }
}
