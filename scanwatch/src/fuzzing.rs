//! The entry points of the fuzz targets (`fuzz/`, run by `cargo xtask fuzz`) and of the test
//! that replays their saved corpus (`tests/tests/fuzz_corpus.rs`): one function per parser of
//! outside input, each feeding the bytes through the daemon's own functions as the daemon
//! calls them. The property is that none of them panics, whatever the bytes.
//!
//! No kernel map is touched: the bouncer stops before the trie write, replay before the
//! kernel's test run, the ring decoders before the maps a finding's report reads.

use std::{path::Path, sync::Arc, time::Duration};

use scanwatch_common::{event::ScanEvent, web::WebSample};

use crate::{
    config::{Config, FileConfig, Overrides},
    finding::{
        from_event::{Examples, finding, wide_source},
        report::{ReportSettings, Reporter},
        web::{inspect, signature::Signatures},
    },
    fleet::{
        bouncer::{Batch, Decisions},
        lapi::{go_duration, parse_stream},
    },
    kernel::rings::record,
    policy::{
        block_lists::{bad_line_warnings, parse_block_list},
        enforce::Policy,
        evidence::{HOP_TOLERANCE, NoAnswerEvidence, NoHandshakeEvidence},
        protect::ProtectedPeers,
    },
    runtime::replay::{Capture, FrameLimits, ip_source},
};

/// A fuzz target: its name (the directory of its corpus) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [Target; 6] = [
    ("lapi_decisions", lapi_decisions),
    ("block_list", block_list),
    ("config", config),
    ("web_signatures", web_signatures),
    ("replay_frames", replay_frames),
    ("ring_records", ring_records),
];

/// The IPv6 prefix the tracker keys sources at by default.
const IPV6_PREFIX: u32 = 64;

/// A CrowdSec decisions-stream answer (`GET /v1/decisions/stream`), as the bouncer reads it:
/// parsed, each duration read as a Go duration, then taken in as a startup pull and a delta,
/// up to the networks to enforce (the trie write is left out: it needs the kernel map).
pub fn lapi_decisions(data: &[u8]) {
    // The client reads the body as UTF-8 text; anything else never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(stream) = parse_stream(text) else {
        return;
    };
    for d in stream.new.iter().chain(&stream.deleted) {
        let _ = go_duration(&d.duration);
    }
    let policy = policy();
    let mut decisions = Decisions::default();
    let received_ns = 1_000_000_000;
    for startup in [true, false] {
        let batch = Batch {
            startup,
            stream: stream.clone(),
            received_ns,
        };
        let _ = decisions.plan(&batch, &policy, IPV6_PREFIX, received_ns + 1);
    }
}

/// The drop-mode policy of a host with no protected peers and no evidence yet.
fn policy() -> Policy {
    Policy {
        drop: true,
        dry_run: false,
        ttl: Duration::from_secs(3600),
        max_ttl: Duration::from_secs(86_400),
        never_block: Vec::new(),
        peers: Some(Arc::new(ProtectedPeers::default())),
        answered: Arc::new(NoAnswerEvidence),
        answered_within: Duration::from_secs(600),
        verified: Arc::new(NoHandshakeEvidence),
        hop_tolerance: HOP_TOLERANCE,
    }
}

/// A block-list file (FireHOL, Spamhaus DROP): its entries and the warnings its bad lines give.
pub fn block_list(data: &[u8]) {
    let (_, bad) = parse_block_list(data);
    let _ = bad_line_warnings(Path::new("fuzz.netset"), &bad);
}

/// A configuration file: TOML into `FileConfig`, validated by `Config::build`, then the kernel
/// configuration it gives. A `[web] signatures` path is dropped: reading an arbitrary path is
/// no parsing (the `web_signatures` target parses signature files).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    if let Some(web) = &mut file.web {
        web.signatures = None;
    }
    if let Ok(config) = Config::build(Some(&file), &Overrides::default()) {
        let _ = config.kernel_config(0);
    }
}

/// A web-signature file over the built-in signatures; then the same bytes as a sampled HTTP
/// request, inspected against the file's signatures (or the built-in ones when the file is
/// refused).
pub fn web_signatures(data: &[u8]) {
    let signatures = std::str::from_utf8(data)
        .ok()
        .and_then(|text| Signatures::load_text(Path::new("fuzz.toml"), text).ok())
        .unwrap_or_default();
    let _ = inspect(data, &signatures);
}

/// A capture (pcap or pcapng) read frame by frame as `scanwatch replay` reads it: each frame
/// converted to Ethernet, its direction found from its IP source, and checked against the limits
/// of the kernel's test run (which is not run).
pub fn replay_frames(data: &[u8]) {
    let Ok(mut capture) = Capture::new(data) else {
        return;
    };
    let limits = FrameLimits::host();
    let mut packet = 0;
    while let Some(Ok(frame)) = capture.next_frame(packet + 1) {
        packet += 1;
        let Some(converted) = frame.link.to_ethernet(frame.data) else {
            continue;
        };
        let _ = ip_source(&converted.data);
        let _ = limits.check(&converted.data, converted.outgoing);
    }
}

/// A ring record as the agent drains it: the first byte picks the ring (even `EVENTS`, odd
/// `WEB_SAMPLES`), the rest is the record. An event becomes its finding as far as no map is
/// read; a web sample goes through the reporter with the built-in signatures.
pub fn ring_records(data: &[u8]) {
    let Some((ring, item)) = data.split_first() else {
        return;
    };
    if ring % 2 == 0 {
        let Some(event) = record::<ScanEvent>(item) else {
            return;
        };
        let _ = finding(
            &event,
            "fuzz0".into(),
            Duration::from_secs(300),
            IPV6_PREFIX,
        );
        let _ = wide_source(&event);
        let _ = Examples::default().add(&event);
    } else {
        let Some(sample) = record::<WebSample>(item) else {
            return;
        };
        let signatures = Signatures::default();
        let settings = ReportSettings {
            window: Duration::from_secs(300),
            long_window: Duration::from_secs(3600),
            ipv6_prefix: IPV6_PREFIX,
            ignore: &[],
            signatures: &signatures,
        };
        let _ = Reporter::default().web(
            &sample,
            &settings,
            "fuzz0".into(),
            std::time::Instant::now(),
        );
    }
}
