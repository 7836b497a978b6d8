//! Names and sizes of the kernel maps, shared so the daemon and tests open the same maps.

/// One-entry array holding the `KernelConfig`.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU `u64` statistics, laid out by `stats`.
pub const STATS: &str = "STATS";
/// LRU hash: `SourceKey` → `SourceState`.
pub const TRACKER: &str = "TRACKER";
/// Array of `u32` fingerprints: the admission filter.
pub const ADMISSION: &str = "ADMISSION";
/// LPM trie of source prefixes never tracked (v4 as v4-mapped, prefix + 96).
pub const IGNORE: &str = "IGNORE";
/// Ring buffer of `ScanEvent`s.
pub const EVENTS: &str = "EVENTS";
/// One-entry array holding an all-zero `SourceState`, the template for tracker inserts (the
/// state is larger than the 512-byte BPF stack, so it cannot be built there).
pub const EMPTY_STATE: &str = "EMPTY_STATE";

/// One-entry array of `ticks::ClockSample`: written by the calibration program
/// (`programs::CLOCK`), read by the daemon at start.
pub const CLOCK_SAMPLE: &str = "CLOCK_SAMPLE";

/// Hash of blocked sources (`SourceKey` → `BlockEntry`), pinned by the daemon.
pub const BLOCKS: &str = "BLOCKS";
/// LPM trie of blocked CIDRs (keys as in `IGNORE`) → `BlockEntry`, pinned by the daemon.
pub const BLOCKLIST: &str = "BLOCKLIST";

/// Array of `u64` words, one bit per IPv4 /24 and per hashed IPv6 /48 that any block covers
/// (`presence`): consulted before `BLOCKS` and `BLOCKLIST`; memory-mapped and pinned by the
/// daemon.
pub const BLOCK_PRESENCE: &str = "BLOCK_PRESENCE";

/// LRU hash: source address (v4-mapped, full length) → `CachedBlock`, the trie's verdict for
/// sources it blocks.
pub const BLOCK_CACHE: &str = "BLOCK_CACHE";

/// LRU hash of the host's outbound flows (`FlowKey` → `FlowState`), written by the TC egress
/// program, read by the XDP program.
pub const FLOWS: &str = "FLOWS";
/// Array of inbound UDP conversations (`u64` slots, `flow::InboundSlot`: a fingerprint and a
/// coarse time, indexed by a seeded hash of both addresses and both ports), written by the XDP
/// program, read by the TC egress program: the host's answers to them are not flows it opened.
pub const INBOUND: &str = "INBOUND";
/// Array of TCP connections this host accepted (`u64` slots, `flow::InboundSlot::accepted`: a
/// fingerprint and a coarse time), written by the TC egress program when it sends a SYN-ACK,
/// read by it when it sends a bare RST: a reset on a connection the host had is no ack_scan
/// evidence.
pub const ACCEPTED: &str = "ACCEPTED";
/// LRU hash of per-destination state for distributed-scan detection (`SourceKey` of the
/// destination → `distributed::TargetState`), written by the XDP program, read by the daemon for a
/// finding's sample of sources.
pub const TARGETS: &str = "TARGETS";
/// One-entry array holding an all-zero `TargetState`, the template for `TARGETS` inserts.
pub const EMPTY_TARGET: &str = "EMPTY_TARGET";
/// Array of per-port state for distributed sweeps (slot `distributed::port_slot` →
/// `distributed::PortState`): one (protocol, port) probed across many destination hosts.
/// Written by the XDP program (probes) and the TC egress program (answers), read by the daemon
/// for a finding's sample.
pub const PORTS: &str = "PORTS";
/// LRU hash of per-source state over the long window (`SourceKey` → `SourceState`): slow scans.
pub const LONG: &str = "LONG";
/// LRU hash of per-prefix state at the wide IPv6 level (`SourceKey::wide_from_ipv6_words` →
/// `wide::WideState`): a scanner rotating /64s inside its /48. Read by the daemon for a
/// finding's first-level prefixes.
pub const WIDE: &str = "WIDE";
/// One-entry array holding an all-zero `WideState`, the template for `WIDE` inserts.
pub const EMPTY_WIDE: &str = "EMPTY_WIDE";
/// LRU hash of per-local-source state for egress scan detection (`SourceKey` → `SourceState`).
pub const EGRESS: &str = "EGRESS";
/// LRU hash of socket cookie → the process that sent the socket's first probe or flow opener
/// (`owner::SocketOwner`), written by the TC egress program, read by the daemon for an egress
/// finding's process.
pub const OWNERS: &str = "OWNERS";
/// LRU hash of remotes that answered a flow this host opened (tracker key → time of the latest
/// answer, `CLOCK_MONOTONIC_COARSE` ns), written by the XDP program in drop mode, read by the
/// daemon (`evidence`).
pub const ANSWERED: &str = "ANSWERED";
/// LRU hash of SYN-ACKs this host sent (`FlowKey` → the ack number that answers them, our ISN
/// + 1), written by the TC egress program in drop mode, consumed by the XDP program.
pub const HANDSHAKES: &str = "HANDSHAKES";
/// Array of `u32`: the expected ack numbers of recent SYN-ACKs, by `evidence::hint_slot`; an
/// ACK whose number is not in its slot skips the `HANDSHAKES` lookup.
pub const HANDSHAKE_HINTS: &str = "HANDSHAKE_HINTS";
/// LRU hash of remotes that completed a TCP handshake with this host (tracker key →
/// `evidence::Verified`, with its hop count), written by the XDP program, read by the daemon.
pub const VERIFIED: &str = "VERIFIED";

/// Ring buffer of `web::WebSample`s: the first request of each new connection to a web port.
pub const WEB_SAMPLES: &str = "WEB_SAMPLES";
/// LRU hash of connections already sampled (`web::WebConnection` → sample time, kernel
/// monotonic ns): later requests of a keep-alive session cost one lookup, not a copy.
pub const WEB_SEEN: &str = "WEB_SEEN";

/// Default tracker capacity. Each entry costs about 880 bytes of kernel memory (824-byte value,
/// 16-byte key, LRU bookkeeping), so 32768 sources ≈ 27 MiB. Adjustable at load time.
pub const TRACKER_CAPACITY: u32 = 32_768;
/// Admission-filter slots (power of two). 65536 × 16 bytes = 1 MiB. Under a flood of `R`
/// spoofed packets/s, a first probe survives `Δ` seconds in its slot's `recent` place with
/// probability `exp(-R·Δ / ADMISSION_SLOTS)`, and a window in its `held` place whatever `R`
/// when that was free (`crate::admission`).
pub const ADMISSION_SLOTS: u32 = 65_536;
/// Ignore-list capacity (prefixes).
pub const IGNORE_CAPACITY: u32 = 16_384;
/// Ring-buffer size: 256 KiB ≈ 1600 events (152 bytes + 8-byte header each).
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Blocked sources held at once (hash, preallocated: 65536 × ~120 bytes ≈ 8 MiB). When full the
/// daemon refuses new blocks (counted as `scanwatch_blocks_refused_total{reason="full"}`) rather
/// than evict a live block: an attacker must not be able to unblock itself by flooding.
pub const BLOCKS_CAPACITY: u32 = 65_536;
/// Block-list CIDRs held at once (LPM trie, allocated per entry): room for the largest public
/// lists (FireHOL level 1 ≈ 4500, Spamhaus DROP ≈ 1500) many times over.
pub const BLOCKLIST_CAPACITY: u32 = 262_144;
/// Sources whose block-list verdict is cached (LRU, 16384 × ~90 bytes ≈ 1.5 MiB): only blocked
/// sources enter, so a flood from unlisted addresses never churns it; when it is full the
/// least recently dropped source pays the trie walk again.
pub const BLOCK_CACHE_CAPACITY: u32 = 16_384;
/// Outbound flows remembered (LRU): 65536 × ~125 bytes ≈ 8 MiB. A busy resolver client opens a
/// few hundred flows a second; with the 120 s lifetime this holds ~500 new flows/s before the
/// oldest are evicted early.
pub const FLOWS_CAPACITY: u32 = 65_536;
/// Inbound UDP conversation slots (power of two): 262,144 × 8 bytes = 2 MiB, preallocated.
/// Every inbound datagram that answers none of our flows stores its conversation's slot (one
/// array store, no insert, no eviction), so a flood costs what the admission filter costs. A
/// spoofer who does not know the seed writes uniformly random slots: under `R` spoofed
/// datagrams/s a conversation survives `t` seconds with probability `exp(-R·t / INBOUND_SLOTS)`.
/// At 2·10⁶/s (the highest flood rate a 2-core x86_64 VM produces) that is a mean life
/// of 131 ms: an answer sent 1 ms after its query is lost with probability 0.8 %, 10 ms after
/// with 7 %; at 10⁶/s half that. A lost answer is recorded as a flow, as every answer was before
/// `INBOUND` existed. 65,536 slots (512 KiB) would lose four times as many (3 % and 26 %) to
/// save about 20 ns of cache misses per spoofed datagram (bench `spoofed_udp_storm`); the LRU
/// this replaces (65,536 × ~100 bytes ≈ 6.5 MiB) kept a conversation a fixed `65536 / R` (33 ms
/// at 2·10⁶/s) for the price of an LRU insert per spoofed datagram. Fingerprint collisions: a
/// lookup falsely matches with probability `load · 2⁻³¹` (31-bit fingerprints; `load` the share
/// of slots noted within `flow_timeout`).
pub const INBOUND_SLOTS: u32 = 262_144;
/// Accepted TCP connection slots (power of two): 262,144 × 8 bytes = 2 MiB, preallocated. Each
/// SYN-ACK the host sends stores its connection's slot (one array store: no insert, no
/// eviction, so a SYN flood the host answers costs what `INBOUND` costs a UDP flood); the slot
/// is read only when the host sends a bare RST. Why: after an application closed a connection,
/// the peer's late segments are answered with bare RSTs on its 4-tuple, which look like the
/// answers to an ACK scan; a connection found here (or among `FLOWS`, for those the host
/// opened) within `flow_timeout` of its SYN-ACK is the host's own. A server accepting `A`
/// connections/s keeps one for `t` seconds with probability `exp(-A·t / ACCEPTED_SLOTS)`
/// (1000/s over 60 s: 80 %); a lost one's resets count as ack_scan evidence, as every reset did
/// before, and one remote needs resets on 10 distinct local ports to be reported. A spoofed
/// SYN flood overwrites random slots (the seed hides which) and can only make resets count.
pub const ACCEPTED_SLOTS: u32 = 262_144;
/// Local sources tracked for egress detection: the host's own addresses (and, on a router,
/// the hosts behind it). 1024 × ~600 bytes ≈ 600 KiB.
pub const EGRESS_CAPACITY: u32 = 1024;
/// Sockets whose sending process is remembered (LRU): 32768 × ~170 bytes ≈ 5.3 MiB. An egress
/// finding looks its socket up within a round trip of the probe, so the entry survives unless
/// the host opens more than 32768 sockets that send in that time; the finding still names the
/// socket's cgroup when it does not.
pub const OWNERS_CAPACITY: u32 = 32_768;
/// Remotes that answered the host's flows (LRU): 65536 × ~80 bytes ≈ 5 MiB. Only the host's own
/// flows can be answered (`FLOWS` is filled by the host alone), so no remote can churn it; it
/// holds every peer of a host that meets up to ~100 new peers a second over the default 10-minute
/// `answered_peer_window`.
pub const ANSWERED_CAPACITY: u32 = 65_536;
/// SYN-ACKs awaiting their ACK (LRU): 16384 × ~100 bytes ≈ 1.6 MiB. An entry lives one round
/// trip; a SYN flood the host answers churns it (an entry then survives 16384 / rate seconds),
/// which only leaves those handshakes unverified: the error goes toward blocking as before, never
/// toward protecting a forger.
pub const HANDSHAKES_CAPACITY: u32 = 16_384;
/// Remotes that completed a handshake (LRU): 65536 × ~90 bytes ≈ 6 MiB. Filled only by remotes
/// that received our SYN-ACK (a spoofer cannot), one write per connection.
pub const VERIFIED_CAPACITY: u32 = 65_536;
/// Destinations tracked for distributed scans: this host's addresses (on a router, the hosts
/// behind it). Only destinations that reach this interface enter, and only through probes of
/// tracked sources, so spoofed sources cannot add keys. 4096 × ~550 bytes (496-byte value,
/// 16-byte key, LRU bookkeeping) ≈ 2.1 MiB.
pub const TARGETS_CAPACITY: u32 = 4096;
/// Slots for (protocol, port) pairs of distributed sweeps (a power of two): 8192 × 352 bytes ≈
/// 2.8 MiB, an array indexed by a seeded hash of the pair (`distributed::port_slot`), so a
/// probe of a new port costs no insert and a spray of ports cannot churn a sweep out: a port
/// holding its slot keeps it against another port with probability `1 − 2^-h`, `h` its hosts in
/// this window (`distributed::PortState::hold_mask`).
pub const PORT_SLOTS: u32 = 8192;
/// Sources tracked over the long window (slow scans): 8192 × ~670 bytes ≈ 5.4 MiB, a quarter of
/// the tracker: only sources already in the tracker enter, and only while they have not been
/// reported in their short window. A slow scanner sends a probe every few seconds to minutes, so
/// it is among the most recently active of the sources still quiet enough to be here; under
/// churn the LRU forgets the longest-idle first.
pub const LONG_CAPACITY: u32 = 8192;
/// Wide IPv6 prefixes tracked (/48s by default): 4096 × ~1162 bytes (1104-byte value, 16-byte
/// key, LRU bookkeeping) ≈ 4.5 MiB. Only IPv6 prefixes already in the tracker and not yet
/// reported in their window feed it, so spoofed single packets never add a key; a /48 holds
/// 65,536 /64s, so under churn the LRU forgets the longest-idle /48 first, never a scanner's
/// /64s one by one.
pub const WIDE_CAPACITY: u32 = 4096;
/// Web-sample ring size: 256 KiB ≈ 450 samples (568 bytes + 8-byte header each) between two
/// drains of the daemon (it drains as soon as the ring is readable). A burst of new
/// connections beyond that is counted (`web_samples_dropped`), never blocks the data path.
pub const WEB_SAMPLES_BYTES: u32 = 256 * 1024;
/// Connections remembered as sampled (LRU): 16384 × ~110 bytes (40-byte key, 8-byte value,
/// LRU bookkeeping) ≈ 1.8 MiB. Only connections whose first segment to a web port starts with
/// an HTTP method enter, one insert per connection. When it is full the least recently active
/// connection is forgotten, and its next request is sampled again: one more sample, no miss.
pub const WEB_SEEN_CAPACITY: u32 = 16_384;
