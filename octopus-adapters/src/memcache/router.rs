//! Key placement across several memcached servers.

use memcache::exp::Router;

use super::codec::{fnv1a, mix};

/// Rendezvous (highest random weight) hashing over FNV-1a and SplitMix64:
/// the same placement on every build, platform and toolchain, so every
/// application server agrees where a key lives. Adding or removing a server
/// moves only the keys that belong to it.
///
/// (The memcache crate's default router hashes with std's `DefaultHasher`,
/// whose output is not guaranteed to stay the same across Rust releases.)
#[derive(Debug, Clone, Copy, Default)]
pub struct StableRendezvous;

impl StableRendezvous {
    /// The index in `servers` (their addresses as configured) of the server
    /// that holds `key`.
    pub fn server_for(key: &[u8], servers: &[String]) -> usize {
        let key_hash = fnv1a(0xcbf2_9ce4_8422_2325, key);
        let mut best = (0u64, 0usize);
        for (i, server) in servers.iter().enumerate() {
            let score = mix(fnv1a(key_hash, server.as_bytes()));
            if i == 0 || score > best.0 {
                best = (score, i);
            }
        }
        best.1
    }
}

impl Router for StableRendezvous {
    fn route(&self, key: &[u8], servers: &[String]) -> usize {
        StableRendezvous::server_for(key, servers)
    }
}
