//! Scan events: written in place in the `EVENTS` ring buffer (a `ScanEvent` is too big for the
//! 512-byte BPF stack next to everything else), the one place that reserves, submits and
//! counts them for every writer (sources, distributed scans).

use scanwatch_common::{event::ScanEvent, stats::Counter};

use crate::{maps::EVENTS, stats::count};

/// Reserves an event, lets `write` fill it, submits it and counts it; false (the drop counted)
/// when the ring is full. `write` gets a pointer to the reserved slot and must set every field.
#[inline(always)]
pub fn emit(write: impl FnOnce(*mut ScanEvent)) -> bool {
    let Some(mut entry) = EVENTS.reserve::<ScanEvent>(0) else {
        count(Counter::EventsDropped);
        return false;
    };
    write(entry.as_mut_ptr());
    entry.submit(0);
    count(Counter::EventsEmitted);
    true
}
