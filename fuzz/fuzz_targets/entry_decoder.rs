//! One journal line, as recovery and replay decode it: must never panic.
//!
//! Each input is decoded twice: as it is (the checksum check itself), and
//! with a valid checksum appended the way the journal writes it (the object
//! without its closing `}`, then `,"crc":"<crc32>"}`), so mutations reach
//! the JSON and field decoding behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octopus::journal::{crc32, decode_line};

fuzz_target!(|data: &[u8]| {
    let _ = decode_line(data);

    let object = data.strip_suffix(b"}").unwrap_or(data);
    let crc = crc32(&[object, b"}"]);
    let mut line = Vec::with_capacity(object.len() + 18);
    line.extend_from_slice(object);
    line.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
    let _ = decode_line(&line);
});
