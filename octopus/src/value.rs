//! The row in transit: [`Value`], [`Record`] and [`Key`].
//!
//! Every backend speaks `Record`; only the derive knows Rust types.

use std::fmt;

use uuid::Uuid;

/// One column value, tagged by its storage class.
///
/// Every supported field type maps onto exactly one variant; `Option<T>` maps
/// `None` to [`Value::Null`]. UUIDs travel as their canonical hyphenated text so
/// they stay readable in every store and sort the same everywhere.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`: the `None` of a nullable column.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (`i8` to `i64`).
    Int(i64),
    /// An unsigned integer (`u8` to `u64`); the full `u64` range is kept.
    UInt(u64),
    /// A float (`f32` widened to `f64`, or `f64`).
    Float(f64),
    /// UTF-8 text (`String`, UUIDs and JSON fields).
    Text(String),
    /// Raw bytes (`Vec<u8>`).
    Bytes(Vec<u8>),
}

impl Value {
    /// The name of this value's storage class, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "bool",
            Value::Int(_) => "signed integer",
            Value::UInt(_) => "unsigned integer",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// One row: its values in the model's schema order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    values: Vec<Value>,
}

impl Record {
    /// A record from values in schema order.
    pub fn new(values: Vec<Value>) -> Self {
        Record { values }
    }

    /// The values in schema order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, mutably (stores use this to stamp versions and times).
    pub fn values_mut(&mut self) -> &mut [Value] {
        &mut self.values
    }

    /// Takes the values out.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The value of column `index`, if the record has that many columns.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the record holds no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A primary key: what a `read`, `delete` or cache lookup is addressed by.
///
/// Keys are strings, signed or unsigned integers; UUID keys are [`Key::Text`]
/// in canonical hyphenated form. `Key` orders and hashes, so stores can index
/// and page by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A signed integer key.
    Int(i64),
    /// An unsigned integer key.
    UInt(u64),
    /// A text (or UUID) key.
    Text(String),
}

impl Key {
    /// The key as a column value.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Int(i) => Value::Int(*i),
            Key::UInt(u) => Value::UInt(*u),
            Key::Text(s) => Value::Text(s.clone()),
        }
    }

    /// The key held in a column value, if that value can be a key.
    pub fn from_value(value: &Value) -> Option<Key> {
        match value {
            Value::Int(i) => Some(Key::Int(*i)),
            Value::UInt(u) => Some(Key::UInt(*u)),
            Value::Text(s) => Some(Key::Text(s.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::UInt(u) => write!(f, "{u}"),
            Key::Text(s) => write!(f, "{s:?}"),
        }
    }
}

macro_rules! key_from_int {
    ($variant:ident: $wide:ty => $($t:ty),*) => {$(
        impl From<$t> for Key {
            fn from(v: $t) -> Key {
                Key::$variant(<$wide>::from(v))
            }
        }
    )*};
}
key_from_int!(Int: i64 => i8, i16, i32, i64);
key_from_int!(UInt: u64 => u8, u16, u32, u64);

impl From<&str> for Key {
    fn from(v: &str) -> Key {
        Key::Text(v.to_owned())
    }
}

impl From<String> for Key {
    fn from(v: String) -> Key {
        Key::Text(v)
    }
}

impl From<&String> for Key {
    fn from(v: &String) -> Key {
        Key::Text(v.clone())
    }
}

impl From<Uuid> for Key {
    fn from(v: Uuid) -> Key {
        Key::Text(v.hyphenated().to_string())
    }
}

impl From<&Uuid> for Key {
    fn from(v: &Uuid) -> Key {
        Key::from(*v)
    }
}

impl From<&Key> for Key {
    fn from(v: &Key) -> Key {
        v.clone()
    }
}
