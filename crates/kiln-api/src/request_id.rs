//! Request ids: UUID-shaped, unique, and cheap. A v4 UUID per request costs a `getrandom`
//! system call; a random per-process prefix plus a counter is as unique for our purpose (telling
//! requests apart in logs and responses) at a fraction of the cost.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            prefix: rand::random(),
            counter: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }
}

impl RequestIds {
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let p = self.prefix;
        // Version 4 and the RFC 4122 variant in their places, as `format!` did before, without
        // the formatting machinery (this runs on every request).
        let high = (p & 0xffff_ffff_ffff_0000) | 0x4000 | (p & 0xfff);
        let low = (0x8000 | ((n >> 48) & 0x3fff)) << 48 | (n & 0xffff_ffff_ffff);
        let mut buffer = uuid::Uuid::encode_buffer();
        uuid::Uuid::from_u64_pair(high, low)
            .hyphenated()
            .encode_lower(&mut buffer)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let ids = RequestIds::default();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(&a[14..15], "4");
        // The same layout as the `format!` it replaced.
        let n = ids.counter.load(Ordering::Relaxed);
        let p = ids.prefix;
        let formatted = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (p >> 32) as u32,
            (p >> 16) as u16,
            (p & 0xfff) as u16,
            0x8000 | ((n >> 48) as u16 & 0x3fff),
            n & 0xffff_ffff_ffff
        );
        assert_eq!(ids.next_id(), formatted);
    }
}
