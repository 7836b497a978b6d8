//! The two ring buffers the agent drains: `EVENTS` (threshold events) and `WEB_SAMPLES`
//! (first requests on web ports).

use std::os::fd::{AsFd as _, AsRawFd, RawFd};

use aya::{
    Ebpf,
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
            if item.len() == size_of::<ScanEvent>() {
                // SAFETY: the kernel wrote a ScanEvent, a plain-integer repr(C) type, of
                // exactly this size; read_unaligned copies it out of the ring.
                out.events
                    .push(unsafe { item.as_ptr().cast::<ScanEvent>().read_unaligned() });
            } else {
                out.wrong_size += 1;
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
            if item.len() == size_of::<WebSample>() {
                // SAFETY: the kernel wrote a WebSample, a plain-integer repr(C) type, of
                // exactly this size; read_unaligned copies it out of the ring.
                out.push(unsafe { item.as_ptr().cast::<WebSample>().read_unaligned() });
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

/// What one drain of the event ring found.
#[derive(Debug, Default)]
pub struct Drained {
    pub events: Vec<ScanEvent>,
    pub wrong_size: usize,
}
