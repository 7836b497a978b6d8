//! The two ring buffers the agent drains: `EVENTS` (threshold events) and `WEB_SAMPLES`
//! (first requests on web ports).

use std::os::fd::{AsFd as _, AsRawFd, RawFd};

use aya::{
    Ebpf, Pod,
    maps::{MapData, RingBuf},
};
use scanwatch_common::{event::ScanEvent, maps, web::WebSample};

use crate::kernel::take::take;

/// `EVENTS`: the ring buffer of threshold events.
pub struct Events(RingBuf<MapData>);

impl Events {
    /// Takes the ring out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self(RingBuf::try_from(take(ebpf, maps::EVENTS)?)?))
    }

    /// Every event waiting in the ring; records of another size (none are written) are
    /// counted in [`Drained::wrong_size`].
    pub fn drain(&mut self) -> Drained {
        let mut out = Drained::default();
        while let Some(item) = self.0.next() {
            match record::<ScanEvent>(&item) {
                Some(event) => out.events.push(event),
                None => out.wrong_size += 1,
            }
        }
        out
    }
}

impl AsRawFd for Events {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// `WEB_SAMPLES`: the first requests of new connections to web ports (`web`).
pub struct WebSamples(RingBuf<MapData>);

impl WebSamples {
    /// Takes the ring out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self(RingBuf::try_from(take(ebpf, maps::WEB_SAMPLES)?)?))
    }

    /// Every sample waiting in the ring (records of another size, never written, are
    /// skipped).
    pub fn drain(&mut self) -> Vec<WebSample> {
        let mut out = Vec::new();
        while let Some(item) = self.0.next() {
            if let Some(sample) = record::<WebSample>(&item) {
                out.push(sample);
            }
        }
        out
    }
}

impl AsRawFd for WebSamples {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A ring record as the type the kernel wrote: `None` when its size is not that type's.
pub fn record<T: Pod>(item: &[u8]) -> Option<T> {
    if item.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: `T` is `Pod` (plain integers, `repr(C)`, any bit pattern valid) and `item` holds
    // exactly `size_of::<T>()` bytes; read_unaligned copies them out of the ring.
    Some(unsafe { item.as_ptr().cast::<T>().read_unaligned() })
}

/// What one drain of the event ring found.
#[derive(Debug, Default)]
pub struct Drained {
    pub events: Vec<ScanEvent>,
    pub wrong_size: usize,
}
