//! Values through the journal are exact: floats keep every bit (the sign
//! of zero, subnormals, the extremes of f32 and f64) after a reopen, which
//! reads them back from the segment's text.

use octopus::journal::{Journal, JournalOptions, Pending};
use octopus::{Key, Model, Write};
use octopus_test_support::bit_patterns;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "readings")]
struct Reading {
    #[octopus(key)]
    id: u64,
    wide: f64,
    narrow: f32,
}

/// Edge cases, then random finite bit patterns of both widths.
fn readings() -> Vec<Reading> {
    let edges = [
        (0.0, 0.0),
        (-0.0, -0.0),
        (f64::MAX, f32::MAX),
        (f64::MIN, f32::MIN),
        (f64::MIN_POSITIVE, f32::MIN_POSITIVE),
        (f64::from_bits(1), f32::from_bits(1)),
        (-f64::from_bits(1), -f32::from_bits(1)),
        (f64::EPSILON, f32::EPSILON),
        (0.1, 0.1),
        (1.0 / 3.0, 1.0 / 3.0),
    ];
    let random = bit_patterns(7)
        .map(|bits| (f64::from_bits(bits), f32::from_bits((bits >> 17) as u32)))
        .filter(|(w, n)| w.is_finite() && n.is_finite())
        .take(400);
    edges
        .into_iter()
        .chain(random)
        .enumerate()
        .map(|(i, (wide, narrow))| Reading {
            id: i as u64,
            wide,
            narrow,
        })
        .collect()
}

#[tokio::test]
async fn floats_keep_every_bit_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let readings = readings();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    for r in &readings {
        let write = Write::Insert(r.to_record().unwrap());
        journal.append(Reading::SCHEMA, &write).await.unwrap();
    }
    journal.close().await.unwrap();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let mut off = Vec::new();
    for r in &readings {
        let back = match journal.lookup(Reading::SCHEMA, &Key::UInt(r.id)).unwrap() {
            Some(Pending::Put(record)) => Reading::from_record(record).unwrap(),
            other => panic!(
                "reading {} is not pending after the reopen: {other:?}",
                r.id
            ),
        };
        if back.wide.to_bits() != r.wide.to_bits() || back.narrow.to_bits() != r.narrow.to_bits() {
            off.push((r.clone(), back));
        }
    }
    journal.close().await.unwrap();
    assert!(
        off.is_empty(),
        "{} of {} readings changed through the journal, first: {:?}",
        off.len(),
        readings.len(),
        off.first()
    );
}
