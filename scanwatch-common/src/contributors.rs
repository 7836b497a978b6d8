//! The contributors an aggregate remembers for its finding (a distributed scan's sources, a
//! wide IPv6 prefix's first-level prefixes): a small ring of the last distinct keys, written by
//! the kernel program and read oldest first by the daemon.

use crate::addr::SourceKey;

/// Adds `key` to `ring` unless it is already there, overwriting the oldest entry once the ring
/// is full; `next` is the slot the next new key goes to. All-zero slots are empty. Returns the
/// key's slot, and whether it was written now (a new key).
#[inline(always)]
pub fn remember<const N: usize>(
    ring: &mut [SourceKey; N],
    next: &mut u32,
    key: &SourceKey,
) -> (usize, bool) {
    if let Some(i) = slot_of(ring, key) {
        return (i, false);
    }
    let slot = (*next as usize) % N;
    if let Some(entry) = ring.get_mut(slot) {
        *entry = *key;
    }
    *next = ((slot + 1) % N) as u32;
    (slot, true)
}

/// The slot of `ring` holding `key`.
#[inline(always)]
pub fn slot_of<const N: usize>(ring: &[SourceKey; N], key: &SourceKey) -> Option<usize> {
    let wanted = key.words();
    // A bounded `while` over the slots: the shape the verifier accepts.
    let mut i = 0;
    while i < N {
        if let Some(known) = ring.get(i)
            && known.words() == wanted
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The keys of `ring`, oldest first, without empty slots.
pub fn oldest_first<const N: usize>(
    ring: &[SourceKey; N],
    next: u32,
) -> impl Iterator<Item = SourceKey> + '_ {
    let start = next as usize % N;
    (0..N)
        .map(move |i| ring[(start + i) % N])
        .filter(|k| *k != SourceKey::default())
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use std::vec::Vec;

    use super::*;

    fn key(i: u8) -> SourceKey {
        SourceKey::from_ipv4([10, 0, 0, i])
    }

    fn listed(ring: &[SourceKey; 4], next: u32) -> Vec<SourceKey> {
        oldest_first(ring, next).collect()
    }

    #[test]
    fn keys_are_kept_once_in_arrival_order() {
        let mut ring = [SourceKey::default(); 4];
        let mut next = 0;
        for i in [1, 2, 1, 3, 2] {
            remember(&mut ring, &mut next, &key(i));
        }
        assert_eq!(listed(&ring, next), [key(1), key(2), key(3)]);
    }

    #[test]
    fn a_full_ring_forgets_the_oldest() {
        let mut ring = [SourceKey::default(); 4];
        let mut next = 0;
        for i in 1..=6 {
            remember(&mut ring, &mut next, &key(i));
        }
        assert_eq!(listed(&ring, next), [key(3), key(4), key(5), key(6)]);
    }
}
