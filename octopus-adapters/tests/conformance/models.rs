//! Models the conformance suite stores.

use std::collections::BTreeMap;

use octopus::Model;
use uuid::Uuid;

/// One field of every supported type.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "everything")]
pub struct Everything {
    #[octopus(key)]
    pub id: i64,
    pub flag: bool,
    pub tiny: i8,
    pub small: i16,
    pub medium: i32,
    pub big: i64,
    pub utiny: u8,
    pub usmall: u16,
    pub umedium: u32,
    pub ubig: u64,
    pub single: f32,
    pub double: f64,
    pub text: String,
    pub bytes: Vec<u8>,
    pub uuid: Uuid,
    pub maybe_text: Option<String>,
    pub maybe_int: Option<i64>,
    pub maybe_ubig: Option<u64>,
    pub maybe_float: Option<f64>,
    pub maybe_bytes: Option<Vec<u8>>,
    pub maybe_uuid: Option<Uuid>,
    pub maybe_flag: Option<bool>,
    #[octopus(json)]
    pub tags: Vec<String>,
    #[octopus(json)]
    pub meta: BTreeMap<String, i32>,
    /// A column named by an SQL keyword.
    #[octopus(rename = "order")]
    pub position: i32,
    #[octopus(skip)]
    pub scratch: u8,
}

impl Everything {
    pub fn plain(id: i64) -> Self {
        Everything {
            id,
            flag: false,
            tiny: 0,
            small: 0,
            medium: 0,
            big: 0,
            utiny: 0,
            usmall: 0,
            umedium: 0,
            ubig: 0,
            single: 0.0,
            double: 0.0,
            text: String::new(),
            bytes: Vec::new(),
            uuid: Uuid::nil(),
            maybe_text: None,
            maybe_int: None,
            maybe_ubig: None,
            maybe_float: None,
            maybe_bytes: None,
            maybe_uuid: None,
            maybe_flag: None,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            position: 0,
            scratch: 0,
        }
    }

    /// Every extreme at once.
    pub fn extremes(id: i64) -> Self {
        Everything {
            id,
            flag: true,
            tiny: i8::MIN,
            small: i16::MAX,
            medium: i32::MIN,
            big: i64::MIN,
            utiny: u8::MAX,
            usmall: u16::MAX,
            umedium: u32::MAX,
            ubig: u64::MAX,
            single: f32::MAX,
            double: f64::MIN_POSITIVE,
            text: "héllo wörld ✓ 日本語 🐙 \"quoted\" 'single' \\ \n\t".into(),
            bytes: (0..=255u8).cycle().take(300_000).collect(),
            uuid: Uuid::now_v7(),
            maybe_text: Some(String::new()),
            maybe_int: Some(i64::MAX),
            maybe_ubig: Some(u64::MAX - 1),
            maybe_float: Some(f64::INFINITY),
            maybe_bytes: Some(Vec::new()),
            maybe_uuid: Some(Uuid::max()),
            maybe_flag: Some(false),
            tags: vec!["a".into(), "ü".into(), String::new()],
            meta: BTreeMap::from([("k".into(), -1), ("🐙".into(), i32::MAX)]),
            position: -7,
            scratch: 0,
        }
    }
}

/// A versioned model with managed timestamps and a generated UUID key.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "books")]
pub struct Book {
    #[octopus(key)]
    pub id: Uuid,
    pub title: String,
    pub author: Option<String>,
    #[octopus(version)]
    pub version: u32,
    #[octopus(created_at)]
    pub created_at: i64,
    #[octopus(updated_at)]
    pub updated_at: i64,
}

impl Book {
    pub fn new(title: &str) -> Self {
        Book {
            id: Uuid::nil(),
            title: title.into(),
            author: None,
            version: 0,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// A string key (generated when empty) without version.
#[derive(Debug, Clone, PartialEq, Model)]
pub struct Tag {
    #[octopus(key)]
    pub name: String,
    pub uses: u64,
}

/// A `u64` key, including values above `i64::MAX`.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "counters")]
pub struct Counter {
    #[octopus(key)]
    pub id: u64,
    pub n: i64,
}

/// NaN goes here.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "measurements")]
pub struct Measurement {
    #[octopus(key)]
    pub id: i32,
    pub value: f64,
    pub maybe: Option<f32>,
}
