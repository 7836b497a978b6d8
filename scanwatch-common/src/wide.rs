//! Per-prefix state at the wide IPv6 level (`WIDE`): a scanner that rotates its /64s inside one
//! /48 stays below every threshold at the first level, so the same per-probe counts are kept for
//! the /48 as well, keyed by `SourceKey::wide_from_ipv6_words` (a marker in the masked-off last
//! byte keeps a /48 key apart from every /64 key).
//!
//! Only probes of first-level prefixes that are tracked (past the admission filter) and not yet
//! reported in their window count, as for the long window and distributed scans: spoofed single
//! packets never create an entry, and a /48 finding does not repeat a /64's own finding. A small
//! ring keeps the last distinct first-level prefixes that contributed, for the finding.

use crate::{addr::SourceKey, state::SourceState};

/// First-level prefixes kept per wide prefix (the last distinct contributors, a ring).
pub const SAMPLE_PREFIXES: usize = 8;

/// One wide prefix's state (1104 bytes): the tracker's per-source state plus the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideState {
    /// Counts and estimators, exactly as the tracker keeps them for a first-level source.
    pub state: SourceState,
    /// Slot of `prefixes` the next new contributor is written to.
    pub next: u32,
    pub reserved: u32,
    /// The last distinct contributing first-level keys, a ring; all-zero slots are empty.
    pub prefixes: [SourceKey; SAMPLE_PREFIXES],
}

impl WideState {
    /// The contributing first-level prefixes, oldest first, without empty slots.
    pub fn sample(&self) -> impl Iterator<Item = SourceKey> + '_ {
        crate::contributors::oldest_first(&self.prefixes, self.next)
    }
}

const _: () = assert!(core::mem::size_of::<WideState>() == 1104);

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn sample_is_oldest_first_without_empty_slots() {
        // SAFETY: every field is integers; all-zero is the empty state the kernel starts from.
        let mut w: WideState = unsafe { core::mem::zeroed() };
        assert_eq!(w.sample().count(), 0);
        for i in 1..=10u16 {
            let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[6..8].copy_from_slice(&i.to_be_bytes());
            w.prefixes[w.next as usize] = SourceKey::from_ipv6(a, 64);
            w.next = (w.next + 1) % SAMPLE_PREFIXES as u32;
        }
        let sample: std::vec::Vec<_> = w.sample().collect();
        assert_eq!(sample.len(), SAMPLE_PREFIXES);
        assert_eq!(sample[0].addr[7], 3, "the oldest kept /64");
        assert_eq!(sample[7].addr[7], 10, "the newest /64");
    }
}
