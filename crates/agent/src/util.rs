//! Small helpers: hashing for keys and prompt hashes, a jitter source, a parallel map.

use sha2::{Digest, Sha256};

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    hex(&h.finalize())
}

/// SHA-256 (hex) of a value's compact JSON, streamed into the hash.
pub fn sha256_json(v: &impl serde::Serialize) -> String {
    struct W(Sha256);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(Sha256::new());
    // Writing into a hash cannot fail, and these values always serialize.
    let _ = serde_json::to_writer(&mut w, v);
    hex(&w.0.finalize())
}

/// A jitter factor in [0.5, 1.5) from a cheap per-call generator (splitmix64 over the clock
/// and a counter): backoff jitter need not be cryptographic, only decorrelated.
pub fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    0.5 + (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration in nanoseconds, saturating (for atomic time counters).
pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Truncates `s` to at most `max` bytes on a char boundary (for bounded logs and prompts).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `items.iter().map(f).collect()`, on up to one thread per core (scoped; the caller's thread
/// is one of them). Results are in `items` order whatever thread computed them; a panic in `f`
/// is re-raised here, as the sequential map would raise it.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    // Work-sharing by index: items differ in cost, so no thread gets a fixed share.
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(x) = items.get(i) else { break };
            out.push((i, f(x)));
        }
        out
    };
    let mut all: Vec<(usize, R)> = std::thread::scope(|s| {
        // A helper thread the OS refuses is no error: the others (and this one) do its share.
        let helpers: Vec<_> = (1..workers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("stepforge-open".into())
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mut all = work();
        for h in helpers {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_in_range_and_hash_stable() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.5..1.5).contains(&j));
        }
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(truncate("héllo", 2), "h");
    }

    #[test]
    fn par_map_keeps_the_order() {
        let items: Vec<u64> = (0..1000).collect();
        // Uneven costs, so threads finish out of order.
        let out = par_map(&items, |&x| (0..(x % 7) * 1000).fold(x, |a, b| a ^ b));
        let seq: Vec<u64> = items
            .iter()
            .map(|&x| (0..(x % 7) * 1000).fold(x, |a, b| a ^ b))
            .collect();
        assert_eq!(out, seq);
        assert!(par_map(&[] as &[u8], |_| 0u8).is_empty());
    }
}
