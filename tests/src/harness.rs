//! Loads the real scanwatch XDP object and drives it with `BPF_PROG_TEST_RUN`.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::OnceLock,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::lpm_trie::Key,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use scanwatch::{
    kernel::{
        maps::Maps,
        rings::{Events, WebSamples},
    },
    net::lpm_network,
};
use scanwatch_common::{
    addr::SourceKey,
    block::BlockEntry,
    classify::PacketClass,
    config::KernelConfig,
    distributed::{PortState, TargetState, port_key},
    event::ScanEvent,
    evidence::Verified,
    maps,
    owner::SocketOwner,
    programs::{EGRESS, EMPTY, EMPTY_TC, OWNERS_ON, REFERENCE, REFERENCE_SPOOF, SPOOF_BENCH, XDP},
    state::SourceState,
    stats::{Counter, ParseError, class_slot, counter_slot, parse_error_slot},
    ticks::Ticks,
    web::{WebConnection, WebSample},
    wide::WideState,
};

/// XDP verdicts.
/// The data path's clock calibration (`scanwatch_common::ticks`), measured once per process
/// by the agent's own code, on a copy of the product object of which only the calibration
/// program is loaded.
pub fn kernel_ticks() -> Result<Ticks> {
    static TICKS: OnceLock<Result<Ticks, String>> = OnceLock::new();
    TICKS
        .get_or_init(|| {
            let mut ebpf = EbpfLoader::new()
                .load(scanwatch::kernel::object::XDP_OBJECT)
                .map_err(|e| format!("loading the product object: {e}"))?;
            scanwatch::kernel::clock::calibrate(&mut ebpf)
                .map_err(|e| format!("{e:#}"))?
                .ok_or_else(|| "the tick rate matches no CONFIG_HZ".to_owned())
        })
        .clone()
        .map_err(|e| anyhow!("calibrating the data path's clock: {e}"))
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Which embedded object to load.
#[derive(Clone, Copy, Debug)]
pub enum Object {
    /// The program the daemon runs.
    Product,
    /// The bench-only spoofed-source variant.
    SpoofBench,
    /// The bench-only empty XDP_PASS program (the baseline).
    Empty,
    /// The bench-only reference: a minimal per-source counter.
    Reference,
    /// The reference under a spoofed storm (a random IPv4 source per run).
    ReferenceSpoof,
}

/// A loaded XDP program with its maps (the daemon's own typed handles).
pub struct Harness {
    ebpf: Ebpf,
    program: &'static str,
    /// `None` for the empty baseline, which has no maps.
    maps: Option<Maps>,
    events: Option<Events>,
    web_samples: Option<WebSamples>,
}

impl Harness {
    /// Loads the product program with the default tracker capacity and an all-zero config.
    pub fn load() -> Result<Self> {
        Self::load_with(Object::Product, None)
    }

    /// Loads `object`, optionally with a different tracker capacity.
    pub fn load_with(object: Object, tracker_capacity: Option<u32>) -> Result<Self> {
        let sizes: Vec<(&str, u32)> = tracker_capacity
            .map(|c| (maps::TRACKER, c))
            .into_iter()
            .collect();
        Self::load_sized(object, &sizes)
    }

    /// Loads `object` with these map sizes (name, max entries). The product object's TC egress
    /// program is loaded too, sharing the maps, recording senders as the daemon does on this
    /// kernel.
    pub fn load_sized(object: Object, sizes: &[(&'static str, u32)]) -> Result<Self> {
        Self::load_switched(object, sizes, true)
    }

    /// The product program with the egress program's recording of senders (`OWNERS_ON`) on
    /// or off, as the daemon loads it on kernels with and without it.
    pub fn load_owners(owners: bool) -> Result<Self> {
        Self::load_switched(Object::Product, &[], owners)
    }

    fn load_switched(object: Object, sizes: &[(&'static str, u32)], owners: bool) -> Result<Self> {
        let (bytes, program) = match object {
            Object::Product => (scanwatch::kernel::object::XDP_OBJECT, XDP),
            Object::SpoofBench => (scanwatch::kernel::object::SPOOF_BENCH_OBJECT, SPOOF_BENCH),
            Object::Empty => (scanwatch::kernel::object::EMPTY_OBJECT, EMPTY),
            Object::Reference => (scanwatch::kernel::object::REFERENCE_OBJECT, REFERENCE),
            Object::ReferenceSpoof => {
                (scanwatch::kernel::object::REFERENCE_OBJECT, REFERENCE_SPOOF)
            }
        };
        let owners_on = u8::from(owners);
        let mut loader = EbpfLoader::new();
        loader.override_global(OWNERS_ON, &owners_on, false);
        for (map, size) in sizes {
            loader.map_max_entries(map, *size);
        }
        let mut ebpf = loader.load(bytes).context("loading the XDP object")?;
        let xdp: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} not in object"))?
            .try_into()?;
        xdp.load().context("verifier rejected the XDP program")?;
        if let Some(tc) = ebpf.program_mut(EGRESS) {
            let tc: &mut SchedClassifier = tc.try_into()?;
            tc.load()
                .context("verifier rejected the TC egress program")?;
        }
        let has_maps = ebpf.map(maps::CONFIG).is_some();
        let maps = has_maps.then(|| Maps::take(&mut ebpf)).transpose()?;
        let events = has_maps.then(|| Events::take(&mut ebpf)).transpose()?;
        let web_samples = has_maps.then(|| WebSamples::take(&mut ebpf)).transpose()?;
        let mut h = Self {
            ebpf,
            program,
            maps,
            events,
            web_samples,
        };
        if h.maps.is_some() {
            h.set_config(&KernelConfig::default())?;
        }
        Ok(h)
    }

    /// Runs the program once on `frame`; returns the verdict.
    pub fn run(&mut self, frame: &[u8]) -> Result<u32> {
        Ok(self.run_repeat(frame, 1)?.0)
    }

    /// Runs the program `repeat` times on `frame`; returns the verdict and the kernel's average
    /// duration per run in nanoseconds.
    pub fn run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(self.program)
            .ok_or_else(|| anyhow!("program vanished"))?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let result = xdp
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        Ok((result.return_value, result.duration.as_nanos() as u64))
    }

    /// Runs the XDP program over each list of frames on its own thread, pinned to the list's CPU,
    /// all at once (one `BPF_PROG_TEST_RUN` per frame): updates of shared state from two CPUs
    /// racing as RSS makes them race on a host.
    pub fn run_on_cpus(&mut self, work: &[(usize, Vec<Vec<u8>>)]) -> Result<()> {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(self.program)
            .ok_or_else(|| anyhow!("program vanished"))?
            .try_into()?;
        let fd = xdp.fd()?.as_fd().as_raw_fd();
        let start = std::sync::Barrier::new(work.len());
        std::thread::scope(|scope| {
            let threads: Vec<_> = work
                .iter()
                .map(|(cpu, frames)| {
                    let start = &start;
                    scope.spawn(move || -> Result<()> {
                        pin_to_cpu(*cpu)?;
                        start.wait();
                        for frame in frames {
                            test_run_raw(fd, frame)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().map_err(|_| anyhow!("a run thread panicked"))?)
        })
    }

    /// Instructions the verifier processed to accept the XDP program and the TC egress program
    /// (`None` for an object without one): how close each is to the 1,000,000 limit.
    pub fn verified_instructions(&self) -> Result<(u32, Option<u32>)> {
        let count = |name: &str| -> Result<Option<u32>> {
            let Some(program) = self.ebpf.program(name) else {
                return Ok(None);
            };
            Ok(program.info()?.verified_instruction_count())
        };
        let xdp = count(self.program)?.ok_or_else(|| anyhow!("no verified instruction count"))?;
        Ok((xdp, count(EGRESS)?))
    }

    /// Attaches the TC egress program to `iface` (in the calling thread's network namespace)
    /// until the harness is dropped.
    pub fn attach_egress(&mut self, iface: &str) -> Result<()> {
        let tc: &mut SchedClassifier = self
            .ebpf
            .program_mut(EGRESS)
            .ok_or_else(|| anyhow!("no egress program"))?
            .try_into()?;
        tc.attach(iface, aya::programs::TcAttachType::Egress)
            .with_context(|| format!("attaching the egress program to {iface}"))?;
        Ok(())
    }

    /// The TC egress program's accumulated run time and run count (while the kernel keeps BPF
    /// statistics, `aya::sys::enable_stats`).
    pub fn egress_run_stats(&self) -> Result<(std::time::Duration, u64)> {
        let info = self
            .ebpf
            .program(EGRESS)
            .ok_or_else(|| anyhow!("no egress program"))?
            .info()?;
        Ok((info.run_time(), info.run_count()))
    }

    /// Runs the TC egress program once on `frame` (as if this host sent it); returns its TC
    /// action.
    pub fn run_egress(&mut self, frame: &[u8]) -> Result<i32> {
        Ok(self.run_egress_repeat(frame, 1)?.0)
    }

    /// Runs the TC egress program `repeat` times; returns the action and the kernel's average
    /// duration per run in nanoseconds.
    pub fn run_egress_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(i32, u64)> {
        let name = if self.program == EMPTY {
            EMPTY_TC
        } else {
            EGRESS
        };
        let tc: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no {name} program in this object"))?
            .try_into()?;
        if tc.fd().is_err() {
            tc.load().context("verifier rejected the TC program")?;
        }
        let mut out = vec![0u8; frame.len() + 256];
        let result = tc
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN (TC)")?;
        Ok((
            result.return_value as i32,
            result.duration.as_nanos() as u64,
        ))
    }

    fn maps(&self) -> Result<&Maps> {
        self.maps
            .as_ref()
            .ok_or_else(|| anyhow!("this object has no scanwatch maps"))
    }

    fn maps_mut(&mut self) -> Result<&mut Maps> {
        self.maps
            .as_mut()
            .ok_or_else(|| anyhow!("this object has no scanwatch maps"))
    }

    /// The recorded sender of the socket whose cookie is `cookie`, if any.
    pub fn owner(&self, cookie: u64) -> Result<Option<SocketOwner>> {
        Ok(self.maps()?.owners.get(cookie))
    }

    /// The egress-detection state of a local source, if any.
    pub fn egress_state(&self, key: &SourceKey) -> Result<Option<SourceState>> {
        self.maps()?.egress.get(key)
    }

    /// When `key` last answered one of our flows (`ANSWERED`), if it did.
    pub fn answered(&self, key: &SourceKey) -> Result<Option<u64>> {
        self.maps()?.answered.get(key)
    }

    /// `key`'s completed handshake (`VERIFIED`), if any.
    pub fn verified(&self, key: &SourceKey) -> Result<Option<Verified>> {
        self.maps()?.verified.get(key)
    }

    /// The long-window (slow scan) state of a source, if any.
    pub fn long_state(&self, key: &SourceKey) -> Result<Option<SourceState>> {
        self.maps()?.long.get(key)
    }

    /// The wide IPv6 level's state of a wide prefix (`SourceKey::wide_from_ipv6`), if any.
    pub fn wide_state(&self, key: &SourceKey) -> Result<Option<WideState>> {
        self.maps()?.wide.get(key)
    }

    /// Every wide prefix the wide IPv6 level holds.
    pub fn wide_keys(&self) -> Result<Vec<SourceKey>> {
        Ok(self.maps()?.wide.keys())
    }

    /// The distributed-scan state of a destination, if any.
    pub fn target_state(&self, key: &SourceKey) -> Result<Option<TargetState>> {
        self.maps()?.targets.get(key)
    }

    /// The distributed-sweep state of a (protocol, port), if any.
    pub fn port_state(&self, proto: u8, port: u16) -> Result<Option<PortState>> {
        self.maps()?.port_state(port_key(proto, port))
    }

    /// Writes the runtime configuration.
    pub fn set_config(&mut self, config: &KernelConfig) -> Result<()> {
        let mut config = *config;
        // As the agent does: a configuration without a clock gets the calibrated one.
        if config.clock_override_ns == 0 && config.tick_ns == 0 {
            config.set_ticks(kernel_ticks()?);
        }
        self.set_config_raw(&config)
    }

    /// Writes `config` as it is: with `tick_ns` 0 and no injected clock, the program reads
    /// `bpf_ktime_get_coarse_ns`.
    pub fn set_config_raw(&mut self, config: &KernelConfig) -> Result<()> {
        self.maps_mut()?.config.write(config)
    }

    /// Sum over CPUs of one statistics slot.
    pub fn stat(&self, slot: u32) -> Result<u64> {
        self.maps()?.stats.get(slot)
    }

    /// Every statistics slot, summed over CPUs, indexed by slot: one snapshot to diff against
    /// another when a test must show that nothing else moved.
    pub fn stats(&self) -> Result<Vec<u64>> {
        self.maps()?.stats.read()
    }

    /// Packets counted in `class`.
    pub fn class_count(&self, class: PacketClass) -> Result<u64> {
        self.stat(class_slot(class))
    }

    /// Parse errors counted for `reason`.
    pub fn parse_errors(&self, reason: ParseError) -> Result<u64> {
        self.stat(parse_error_slot(reason))
    }

    /// A data-path counter.
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        self.stat(counter_slot(counter))
    }

    /// The tracker's state for `key`, if tracked.
    pub fn tracked(&self, key: &SourceKey) -> Result<Option<SourceState>> {
        self.maps()?.tracker.get(key)
    }

    /// Number of sources in the tracker.
    pub fn tracked_count(&self) -> Result<usize> {
        Ok(self.maps()?.tracker.len())
    }

    /// The number of tracked sources and the `n` with the most probes, as the daemon's
    /// gauges and status file read them.
    pub fn tracked_top(&self, n: usize) -> Result<(usize, Vec<(SourceKey, u64)>)> {
        Ok(self.maps()?.tracker.top(n))
    }

    /// Number of flows in the flow map, as the daemon's gauge reads it.
    pub fn flow_count(&self) -> Result<usize> {
        Ok(self.maps()?.flows.len())
    }

    /// Every source key in the tracker.
    pub fn tracked_keys(&self) -> Result<Vec<SourceKey>> {
        Ok(self.maps()?.tracker.keys())
    }

    /// Adds an ignore-list prefix (16-byte address, prefix length in IPv6 terms) and bumps
    /// the config's entry count so the program consults the list.
    pub fn ignore(
        &mut self,
        addr: [u8; 16],
        prefix_len: u32,
        config: &mut KernelConfig,
    ) -> Result<()> {
        let net = lpm_network(&Key::new(prefix_len, addr));
        self.maps_mut()?.ignore.insert(&net)?;
        config.ignore_entries += 1;
        self.set_config(config)
    }

    /// Adds a per-source block (the detection-block hash).
    pub fn block_source(&mut self, key: &SourceKey, entry: &BlockEntry) -> Result<()> {
        self.maps_mut()?.blocks.insert(key, entry)?;
        Ok(())
    }

    /// Adds a CIDR block (16-byte address, prefix length in IPv6 terms) to the block trie.
    pub fn block_prefix(
        &mut self,
        addr: [u8; 16],
        prefix_len: u32,
        entry: &BlockEntry,
    ) -> Result<()> {
        let net = lpm_network(&Key::new(prefix_len, addr));
        self.maps_mut()?.blocklist.insert(&net, entry)?;
        Ok(())
    }

    /// The CIDR block entry for exactly this prefix, as `scanwatch list` reads it.
    pub fn prefix_block(&self, addr: [u8; 16], prefix_len: u32) -> Result<Option<BlockEntry>> {
        let net = lpm_network(&Key::new(prefix_len, addr));
        Ok(self
            .maps()?
            .blocklist
            .entries()
            .into_iter()
            .find_map(|(n, e)| (n == net).then_some(e)))
    }

    /// Removes a CIDR block added with [`Harness::block_prefix`].
    pub fn unblock_prefix(&mut self, addr: [u8; 16], prefix_len: u32) -> Result<bool> {
        let net = lpm_network(&Key::new(prefix_len, addr));
        Ok(self.maps_mut()?.blocklist.remove(&net))
    }

    /// Forgets which connections were sampled (`WEB_SEEN`), so the next request on any of them
    /// is a first request again (the bench times first requests on a few real connections).
    pub fn forget_sampled_connections(&mut self) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(maps::WEB_SEEN)
            .context("no WEB_SEEN map in the object")?;
        let mut seen: aya::maps::HashMap<_, WebConnection, u64> =
            aya::maps::HashMap::try_from(map)?;
        let keys: Vec<WebConnection> = seen.keys().filter_map(Result::ok).collect();
        for key in keys {
            seen.remove(&key)?;
        }
        Ok(())
    }

    /// Drains the web-request samples the program has sent.
    pub fn web_samples(&mut self) -> Vec<WebSample> {
        self.web_samples
            .as_mut()
            .map(WebSamples::drain)
            .unwrap_or_default()
    }

    /// Drains the events the program has sent.
    pub fn events(&mut self) -> Vec<ScanEvent> {
        let Some(events) = self.events.as_mut() else {
            return Vec::new();
        };
        let drained = events.drain();
        assert_eq!(
            drained.wrong_size, 0,
            "ring records that are not a ScanEvent"
        );
        drained.events
    }
}

/// Pins the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get a
    // pointer to it and its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPU {cpu}"));
    }
    Ok(())
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
}

/// One test run of program `fd` on `frame`, on the calling thread's CPU; its return value.
/// A raw syscall: the threads of [`Harness::run_on_cpus`] share the program by its descriptor.
fn test_run_raw(fd: std::os::fd::RawFd, frame: &[u8]) -> Result<u32> {
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; `data_in` points to
    // `frame`, alive for the call; no output buffer is given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_TEST_RUN");
    }
    Ok(attr.retval)
}
