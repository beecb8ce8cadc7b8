//! A `json` field is written only if it can be read back: serde_json turns
//! NaN into `null` and writes nesting its reader refuses, so such a model
//! is refused at write with an error naming the table and column, and
//! nothing is stored.

use std::sync::Arc;

use octopus::{Dao, Error, MemoryStore, Model, Plan, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Samples {
    values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "series")]
struct Series {
    #[octopus(key)]
    id: u64,
    #[octopus(json)]
    samples: Samples,
    #[octopus(json)]
    extra: serde_json::Value,
}

fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::Value::Null, |inner, _| {
        serde_json::Value::Array(vec![inner])
    })
}

fn series(values: Vec<f64>, extra: serde_json::Value) -> Series {
    Series {
        id: 1,
        samples: Samples { values },
        extra,
    }
}

async fn create(series: &mut Series) -> (octopus::Result<()>, usize) {
    let store = Arc::new(MemoryStore::new());
    let plan = Arc::new(Plan::builder(store.clone()).build().unwrap());
    let dao: Dao<Series> = Dao::new(plan);
    let result = dao.create(series).await.map(drop);
    let stored = store.scan(Series::SCHEMA, None, 10).await.unwrap().len();
    (result, stored)
}

fn refused_column(result: octopus::Result<()>) -> String {
    match result {
        Err(Error::Invalid { what }) => what,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_nan_inside_a_json_field_is_refused_and_nothing_is_stored() {
    let (result, stored) = create(&mut series(vec![1.0, f64::NAN], nested(1))).await;
    let what = refused_column(result);
    assert!(
        what.contains("table `series`, column `samples`") && what.contains("read back"),
        "{what}"
    );
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn json_nested_deeper_than_the_reader_allows_is_refused_and_nothing_is_stored() {
    let (result, stored) = create(&mut series(vec![1.0], nested(200))).await;
    let what = refused_column(result);
    assert!(what.contains("column `extra`"), "{what}");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn json_fields_that_read_back_are_written() {
    let mut ok = series(vec![1.5, -0.0, f64::MAX], nested(100));
    let (result, stored) = create(&mut ok).await;
    result.unwrap();
    assert_eq!(stored, 1);
    let back = Series::from_record(ok.to_record().unwrap()).unwrap();
    assert_eq!(back, ok);
}
