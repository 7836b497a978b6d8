//! The differential check of the data path: one frame through the real XDP program and through
//! the host model (`scanwatch_common::parse_model`), compared on what the program counts and
//! decides. Shared by the differential kernel test, the saved-corpus test and the `datapath`
//! fuzz target, so all three hold the program to the same model.
//!
//! The program runs twice per frame, as two loaded copies: in monitor mode, and in drop mode
//! with [`BLOCKED_V4`] and [`BLOCKED_V6`] blocked. Each run is compared on its verdict, the
//! packet classes and parse errors that moved (exactly one class, and its parse error if any),
//! and whether the frame reached the tracker as a probe. Every source is on the ignore list, so
//! a probe is counted as `ignored` instead of changing per-source state: each frame's outcome
//! depends on the frame alone, whatever came before it.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Mutex, OnceLock},
};

use anyhow::{Context as _, Result};
use scanwatch::runtime::replay::FrameLimits;
use scanwatch_common::{
    addr::SourceKey,
    block::{BLOCK_NOTE_LEN, BlockEntry, BlockReason},
    classify::PacketClass,
    config::{FLAG_DROP, KernelConfig},
    parse_model::{self, Outcome, Verdict},
    proto::ETH_HLEN,
    stats::{Counter, ParseError, class_slot, counter_slot, parse_error_slot},
};

use crate::harness::Harness;

/// The IPv4 network blocked in drop mode (TEST-NET-1).
pub const BLOCKED_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(192, 0, 2, 0), 24);
/// The IPv6 network blocked in drop mode (a /48 of the documentation prefix).
pub const BLOCKED_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0, 0, 0, 0, 0), 48);

/// True when `source` is covered by [`BLOCKED_V4`] or [`BLOCKED_V6`] (IPv4 sources and v4-mapped
/// IPv6 sources alike: the block trie keys IPv4 as v4-mapped).
pub fn is_blocked(source: &SourceKey) -> bool {
    let (v4, v4_len) = BLOCKED_V4;
    let (v6, v6_len) = BLOCKED_V6;
    in_prefix(source, &SourceKey::from_ipv4(v4.octets()).addr, 96 + v4_len)
        || in_prefix(source, &v6.octets(), v6_len)
}

fn in_prefix(source: &SourceKey, net: &[u8; 16], len: u8) -> bool {
    let (bytes, bits) = (usize::from(len / 8), len % 8);
    source.addr[..bytes] == net[..bytes]
        && (bits == 0 || (source.addr[bytes] ^ net[bytes]) >> (8 - bits) == 0)
}

/// What one run did, read from the verdict and the statistics slots that moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub verdict: u32,
    /// Every packet class that moved, with how much.
    pub classes: Vec<(PacketClass, u64)>,
    /// Every parse error that moved, with how much.
    pub errors: Vec<(ParseError, u64)>,
    /// How far `ignored` moved: the frame reached the tracker as a probe of an ignored source.
    pub probes: u64,
}

impl Answer {
    /// What the model says a run in `drop_mode` must show.
    pub fn expected(outcome: &Outcome, drop_mode: bool) -> Self {
        let verdict = outcome.verdict(drop_mode, is_blocked);
        Self {
            verdict: verdict as u32,
            classes: vec![(outcome.class, 1)],
            errors: outcome.error.map(|e| (e, 1)).into_iter().collect(),
            probes: u64::from(verdict == Verdict::Pass && outcome.probe().is_some()),
        }
    }

    fn observed(verdict: u32, moved: &[u64]) -> Self {
        let nonzero = |slot: u32| Some(moved[slot as usize]).filter(|n| *n != 0);
        Self {
            verdict,
            classes: PacketClass::ALL
                .iter()
                .filter_map(|c| Some((*c, nonzero(class_slot(*c))?)))
                .collect(),
            errors: ParseError::ALL
                .iter()
                .filter_map(|e| Some((*e, nonzero(parse_error_slot(*e))?)))
                .collect(),
            probes: moved[counter_slot(Counter::Ignored) as usize],
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            v if v == Verdict::Pass as u32 => "XDP_PASS".to_owned(),
            v if v == Verdict::Drop as u32 => "XDP_DROP".to_owned(),
            v => format!("verdict {v}"),
        };
        write!(f, "{verdict}, class")?;
        for (class, n) in &self.classes {
            write!(f, " {}×{n}", class.name())?;
        }
        if self.errors.is_empty() {
            write!(f, ", no parse error")?;
        }
        for (error, n) in &self.errors {
            write!(f, ", parse error {}×{n}", error.name())?;
        }
        write!(f, ", tracked as a probe ×{}", self.probes)
    }
}

/// A frame on which the program and the model disagree.
#[derive(Debug)]
pub struct Mismatch {
    pub frame: Vec<u8>,
    /// "monitor" or "drop".
    pub mode: &'static str,
    pub model: Answer,
    pub kernel: Answer,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the XDP program and the model disagree ({} mode, {} bytes):",
            self.mode,
            self.frame.len()
        )?;
        // As `hexdump` does: a run of lines like the one before it is one `*`.
        let mut previous: Option<&[u8]> = None;
        let mut elided = false;
        for (i, line) in self.frame.chunks(16).enumerate() {
            if previous == Some(line) {
                if !elided {
                    writeln!(f, "  *")?;
                }
                elided = true;
                continue;
            }
            (previous, elided) = (Some(line), false);
            write!(f, "  {:04x} ", i * 16)?;
            for b in line {
                write!(f, " {b:02x}")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "  model:  {}", self.model)?;
        write!(f, "  kernel: {}", self.kernel)
    }
}

/// One loaded copy of the program, with the statistics as they stood after its last run.
struct Loaded {
    harness: Harness,
    drop_mode: bool,
    stats: Vec<u64>,
}

impl Loaded {
    fn load(drop_mode: bool) -> Result<Self> {
        let mut harness = Harness::load()?;
        let mut config = KernelConfig {
            flags: if drop_mode { FLAG_DROP } else { 0 },
            ..KernelConfig::default()
        };
        // `::/0`: every source, IPv4 (v4-mapped) included.
        harness.ignore([0; 16], 0, &mut config)?;
        if drop_mode {
            let entry = BlockEntry {
                added_ns: 1,
                expires_ns: 0,
                packets: 0,
                bytes: 0,
                reason: BlockReason::Manual as u32,
                offenses: 1,
                note: [0; BLOCK_NOTE_LEN],
            };
            let (v4, v4_len) = BLOCKED_V4;
            let (v6, v6_len) = BLOCKED_V6;
            let v4_key = SourceKey::from_ipv4(v4.octets()).addr;
            harness.block_prefix(v4_key, 96 + u32::from(v4_len), &entry)?;
            harness.block_prefix(v6.octets(), u32::from(v6_len), &entry)?;
        }
        let stats = harness.stats()?;
        Ok(Self {
            harness,
            drop_mode,
            stats,
        })
    }

    fn run(&mut self, frame: &[u8]) -> Result<Answer> {
        let verdict = self.harness.run(frame)?;
        let stats = self.harness.stats()?;
        let moved: Vec<u64> = stats.iter().zip(&self.stats).map(|(a, b)| a - b).collect();
        self.stats = stats;
        Ok(Answer::observed(verdict, &moved))
    }
}

/// The program in monitor mode and in drop mode, checked against the model frame by frame.
pub struct Datapath {
    copies: [Loaded; 2],
    /// The bytes of a frame the program reads; the model is given as many.
    xdp_linear: usize,
}

impl Datapath {
    /// Loads both copies of the product program (needs root).
    pub fn load() -> Result<Self> {
        Ok(Self {
            copies: [
                Loaded::load(false).context("loading the program in monitor mode")?,
                Loaded::load(true).context("loading the program in drop mode")?,
            ],
            xdp_linear: FrameLimits::host().xdp_linear,
        })
    }

    /// What the model says of `frame`, from the bytes the program reads.
    pub fn model(&self, frame: &[u8]) -> Outcome {
        parse_model::parse(&frame[..frame.len().min(self.xdp_linear)])
    }

    /// Runs `frame` through both copies and the model. `Ok(None)` when they agree (or the
    /// frame is shorter than an Ethernet header, which `BPF_PROG_TEST_RUN` refuses to run);
    /// `Err` only when the test run itself fails.
    pub fn check(&mut self, frame: &[u8]) -> Result<Option<Mismatch>> {
        if frame.len() < ETH_HLEN {
            return Ok(None);
        }
        let outcome = self.model(frame);
        for copy in &mut self.copies {
            let kernel = copy.run(frame)?;
            let model = Answer::expected(&outcome, copy.drop_mode);
            if kernel != model {
                return Ok(Some(Mismatch {
                    frame: frame.to_vec(),
                    mode: if copy.drop_mode { "drop" } else { "monitor" },
                    model,
                    kernel,
                }));
            }
        }
        Ok(None)
    }
}

/// The `datapath` fuzz target's entry point: checks `frame`, with the program loaded once per
/// process, and panics on a disagreement (libFuzzer saves the input).
pub fn fuzz(frame: &[u8]) {
    static DATAPATH: OnceLock<Mutex<Datapath>> = OnceLock::new();
    let datapath = DATAPATH.get_or_init(|| {
        crate::require_root();
        Mutex::new(Datapath::load().expect("loading the scanwatch XDP program"))
    });
    let mut datapath = datapath
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(mismatch) = datapath.check(frame).expect("BPF_PROG_TEST_RUN") {
        panic!("{mismatch}");
    }
}
