//! The admission filter's slots: a source enters the tracker only on its second probe, and its
//! first probe is remembered here, in a fixed-size array indexed by a seeded hash of the source.
//!
//! Each slot remembers two first probes:
//! - `recent`, the last one that landed on the slot, overwritten by every next one. It admits
//!   a source whose second probe comes before another first probe lands on its slot: every
//!   fast scanner, also under a flood (at `R` forged packets/s a probe survives `Δ` seconds with
//!   probability `exp(-R·Δ / ADMISSION_SLOTS)`).
//! - `held`, kept against overwriting for `hold` (the short window): a slot taken stays taken
//!   until it is claimed or its hold runs out. It admits a source that probes again within a
//!   window of its first probe however fast others arrive meanwhile, unless the slot was
//!   already held when its first probe came: a slow scanner that probes before a flood starts
//!   survives any flood rate; one that starts during a sustained flood waits until a hold it
//!   lands on has run out (at `R` packets/s, a fraction of about
//!   `(ADMISSION_SLOTS / R) / (hold + ADMISSION_SLOTS / R)` of its probes find one).
//!
//! A flood thus costs a slow scanner its admission only while it outlasts the hold and starts
//! before the scanner does; it never evicts a source already tracked.

/// One admission-filter slot (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionSlot {
    /// Fingerprint of the last first probe that landed here; 0 when claimed.
    pub recent: u32,
    /// Fingerprint held against overwriting until `held_since + hold`; 0 when free.
    pub held: u32,
    /// When `held` was written, in [`clock_units`].
    pub held_since: u32,
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<AdmissionSlot>() == 16);

/// The filter's coarse clock: 2^30 ns (about 1.07 s) units, enough to time a hold of seconds
/// to days in 32 bits, and a shift rather than a division per packet.
#[inline(always)]
pub const fn clock_units(ns: u64) -> u32 {
    (ns >> 30) as u32
}

impl AdmissionSlot {
    /// A probe with (non-zero) `fingerprint` at `now` (in [`clock_units`]): true when it is the
    /// source's second, which frees what the source held; false when it is remembered as a
    /// first probe. `hold` is how long a held fingerprint is kept, in the same units.
    #[inline(always)]
    pub fn admit(&mut self, fingerprint: u32, now: u32, hold: u32) -> bool {
        let was_held = self.held == fingerprint;
        if was_held || self.recent == fingerprint {
            if was_held {
                self.held = 0;
            }
            if self.recent == fingerprint {
                self.recent = 0;
            }
            return true;
        }
        self.recent = fingerprint;
        if self.held == 0 || now.wrapping_sub(self.held_since) >= hold {
            self.held = fingerprint;
            self.held_since = now;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: u32 = 280;

    #[test]
    fn a_second_probe_is_admitted_once() {
        let mut slot = AdmissionSlot::default();
        assert!(!slot.admit(7, 0, HOLD));
        assert!(slot.admit(7, 1, HOLD));
        // Its third probe would find nothing left: it is in the tracker by then.
        assert!(!slot.admit(7, 2, HOLD));
    }

    #[test]
    fn a_flood_on_the_slot_cannot_take_a_held_first_probe() {
        let mut slot = AdmissionSlot::default();
        assert!(!slot.admit(7, 0, HOLD));
        for (t, forged) in (1..HOLD).zip(100u32..) {
            assert!(!slot.admit(forged, t, HOLD));
        }
        assert!(slot.admit(7, HOLD - 1, HOLD), "held for the whole hold");
    }

    #[test]
    fn a_hold_runs_out_and_the_slot_is_taken_again() {
        let mut slot = AdmissionSlot::default();
        assert!(!slot.admit(7, 0, HOLD));
        assert!(!slot.admit(8, HOLD, HOLD));
        assert_eq!(slot.held, 8);
        assert!(
            !slot.admit(7, HOLD + 1, HOLD),
            "both places now hold another source"
        );
        assert!(slot.admit(8, HOLD + 2, HOLD));
    }

    #[test]
    fn a_fast_source_is_admitted_from_recent_while_another_holds_the_slot() {
        let mut slot = AdmissionSlot::default();
        assert!(!slot.admit(7, 0, HOLD));
        assert!(!slot.admit(9, 5, HOLD));
        assert_eq!(slot.held, 7);
        assert!(slot.admit(9, 5, HOLD));
        assert!(slot.admit(7, 6, HOLD));
    }

    #[test]
    fn the_clock_wraps_without_holding_forever() {
        let mut slot = AdmissionSlot::default();
        assert!(!slot.admit(7, u32::MAX - 1, HOLD));
        assert!(
            !slot.admit(8, HOLD, HOLD),
            "the hold ran out across the wrap"
        );
        assert_eq!(slot.held, 8);
    }

    #[test]
    fn clock_units_are_about_a_second() {
        assert_eq!(clock_units(1 << 30), 1);
        assert_eq!(clock_units(300_000_000_000), 279);
    }
}
