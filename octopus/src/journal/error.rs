//! Why one journal line is not an entry.
//!
//! [`EntryError`] is what the line decoder (`decode::parse`) and the segment
//! reader report for a single line. Recovery and replay turn it into an
//! [`crate::Error::Journal`] naming the segment and byte offset, with this
//! error's message as (part of) the reason.

/// Why a line of a segment could not be decoded into an entry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    /// The line has no newline: the file ends inside it (an append that was
    /// cut short, or one still being written).
    #[error("entry cut short (no newline)")]
    CutShort,
    /// The line is shorter than the smallest possible entry.
    #[error("line too short")]
    TooShort,
    /// The line does not end with a `,"crc":"xxxxxxxx"}` checksum.
    #[error("no checksum at the end of the line")]
    NoChecksum,
    /// The checksum at the end of the line is not hexadecimal.
    #[error("checksum is not hex")]
    ChecksumNotHex,
    /// The checksum stored on the line is not that of its bytes.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    ChecksumMismatch {
        /// The checksum the line carries.
        stored: u32,
        /// The checksum of the line's bytes.
        computed: u32,
    },
    /// The checksum matches but the line is not a JSON object.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// A field every entry has is absent.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A field is there but of the wrong kind.
    #[error("`{field}` is {why}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it, e.g. "not a number".
        why: &'static str,
    },
    /// `op` is not one of the operations the journal writes.
    #[error("`op` is not create, update, delete or put")]
    UnknownOp,
}

impl EntryError {
    /// A [`EntryError::BadField`] for `field`.
    pub(crate) fn bad(field: &'static str, why: &'static str) -> Self {
        EntryError::BadField { field, why }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_wrong() {
        let cases = [
            (EntryError::CutShort, "entry cut short (no newline)"),
            (EntryError::TooShort, "line too short"),
            (EntryError::NoChecksum, "no checksum at the end of the line"),
            (EntryError::ChecksumNotHex, "checksum is not hex"),
            (
                EntryError::ChecksumMismatch {
                    stored: 0x1a2b,
                    computed: 0xdead_beef,
                },
                "checksum mismatch (stored 00001a2b, computed deadbeef)",
            ),
            (EntryError::Missing("seq"), "missing `seq`"),
            (
                EntryError::bad("time", "not a number"),
                "`time` is not a number",
            ),
            (
                EntryError::UnknownOp,
                "`op` is not create, update, delete or put",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        let json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let text = format!("not JSON: {json}");
        assert_eq!(EntryError::NotJson(json).to_string(), text);
    }
}
