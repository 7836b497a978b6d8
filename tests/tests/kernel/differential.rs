//! The data path against its host model (`scanwatch_common::parse_model`): several thousand
//! frames, valid ones of every class and mutated ones, each run through the real XDP program in
//! monitor and drop mode (`scanwatch_tests::differential`) and compared on verdict, class,
//! parse error and tracking. Any disagreement fails the test and prints the frame in hex.
//!
//! The frames come from a seeded generator: the seed is printed, and `SCANWATCH_DIFF_SEED=N`
//! replays a run. `SCANWATCH_DIFF_CORPUS=DIR` also writes every 64th frame to DIR, seeds for
//! the `datapath` fuzz target.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Instant,
};

use rand::{Rng, SeedableRng as _, rngs::StdRng, seq::IndexedRandom as _};
use scanwatch_common::{
    classify::PacketClass,
    parse_model::{self, Verdict},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    },
    stats::ParseError,
};
use scanwatch_tests::{
    differential::{BLOCKED_V4, BLOCKED_V6, Datapath, is_blocked},
    packet::{
        Ext, PacketBuilder,
        tcp_flags::{ACK, FIN, PSH, RST, SYN, URG},
    },
    require_root,
};

/// Valid frames generated per run. With their mutated variants and the truncations of every
/// eighth one, a run checks about 22,000 frames, in a few seconds.
const BASE_FRAMES: usize = 3_000;
/// Mutated variants of each valid frame.
const VARIANTS: usize = 3;
/// Frames printed in full when the program and the model disagree.
const SHOWN: usize = 10;

#[test]
fn xdp_program_agrees_with_the_parser_model() {
    require_root();
    let seed = std::env::var("SCANWATCH_DIFF_SEED").map_or_else(
        |_| rand::random(),
        |s| s.parse::<u64>().expect("SCANWATCH_DIFF_SEED: a number"),
    );
    println!("differential: seed {seed} (SCANWATCH_DIFF_SEED={seed} replays this run)");
    let corpus = std::env::var_os("SCANWATCH_DIFF_CORPUS").map(PathBuf::from);
    if let Some(dir) = &corpus {
        std::fs::create_dir_all(dir).expect("creating SCANWATCH_DIFF_CORPUS");
    }

    let mut datapath = Datapath::load().expect("loading the scanwatch XDP program");
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(seed),
    };
    let started = Instant::now();
    let mut coverage = Coverage::default();
    let mut mismatches = Vec::new();
    let mut frames = 0usize;
    for base in 0..BASE_FRAMES {
        let packet = generator.packet();
        let valid = packet.build();
        let mut batch = vec![valid.clone()];
        for _ in 0..VARIANTS {
            batch.push(generator.mutated(&packet, &valid));
        }
        if base.is_multiple_of(8) {
            batch.extend(truncations(&packet, &valid));
        }
        for frame in batch {
            if let Some(dir) = &corpus
                && frames.is_multiple_of(64)
            {
                std::fs::write(dir.join(format!("{frames:05}")), &frame).unwrap();
            }
            frames += 1;
            coverage.add(&datapath, &frame);
            if let Some(mismatch) = datapath.check(&frame).expect("BPF_PROG_TEST_RUN") {
                mismatches.push(mismatch);
            }
        }
    }
    println!(
        "differential: {frames} frames in {:.1} s, {} disagreements",
        started.elapsed().as_secs_f64(),
        mismatches.len()
    );
    for mismatch in mismatches.iter().take(SHOWN) {
        println!("{mismatch}\n");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {frames} frames: the XDP program and the model disagree (seed {seed}; the first \
         {SHOWN} are printed above)",
        mismatches.len()
    );
    coverage.assert_complete();
}

/// The classes and parse errors the model gave the generated frames: a generator that stopped
/// reaching one would leave that rule unchecked.
#[derive(Default)]
struct Coverage {
    classes: [usize; scanwatch_common::classify::PACKET_CLASSES],
    errors: [usize; scanwatch_common::stats::PARSE_ERRORS],
    /// Frames drop mode drops.
    drops: usize,
}

impl Coverage {
    fn add(&mut self, datapath: &Datapath, frame: &[u8]) {
        let outcome = datapath.model(frame);
        if frame.len() >= ETH_HLEN {
            self.classes[outcome.class as usize] += 1;
            if let Some(error) = outcome.error {
                self.errors[error as usize] += 1;
            }
            self.drops += usize::from(outcome.verdict(true, is_blocked) == Verdict::Drop);
        }
    }

    fn assert_complete(&self) {
        assert!(self.drops > 0, "no frame from a blocked source");
        for class in PacketClass::ALL {
            assert!(
                self.classes[class as usize] > 0,
                "no frame of class {}",
                class.name()
            );
        }
        // `EthTruncated` needs a frame shorter than the test run takes.
        for error in ParseError::ALL.into_iter().skip(1) {
            assert!(
                self.errors[error as usize] > 0,
                "no frame with {}",
                error.name()
            );
        }
    }
}

/// Random packets from the builders, and mutations of their bytes.
struct Generator {
    rng: StdRng,
}

impl Generator {
    /// A source (blocked or not, IPv4 or IPv6, sometimes v4-mapped) and a destination.
    fn addresses(&mut self, v6: bool) -> (IpAddr, IpAddr) {
        let host = self.rng.random::<u8>();
        if !v6 {
            let src = if self.rng.random_bool(0.5) {
                let o = BLOCKED_V4.0.octets();
                Ipv4Addr::new(o[0], o[1], o[2], host)
            } else {
                Ipv4Addr::new(203, 0, 113, host)
            };
            return (src.into(), Ipv4Addr::new(198, 51, 100, 1).into());
        }
        let blocked = BLOCKED_V6.0.segments();
        let src = match self.rng.random_range(0..4) {
            0 => Ipv6Addr::new(blocked[0], blocked[1], blocked[2], 0, 0, 0, 0, host.into()),
            1 => Ipv6Addr::new(0x2001, 0xdb8, 0xbeef, 0, 0, 0, 0, host.into()),
            2 => {
                let o = BLOCKED_V4.0.octets();
                Ipv4Addr::new(o[0], o[1], o[2], host).to_ipv6_mapped()
            }
            _ => Ipv4Addr::new(203, 0, 113, host).to_ipv6_mapped(),
        };
        (
            src.into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0x7a7, 0, 0, 0, 0, 1).into(),
        )
    }

    /// A valid packet: any L4 the builders make, behind any mix of VLAN tags, IPv4 options,
    /// fragments and IPv6 extension headers.
    fn packet(&mut self) -> PacketBuilder {
        let v6 = self.rng.random_bool(0.5);
        let (src, dst) = self.addresses(v6);
        let rng = &mut self.rng;
        let port = rng.random::<u16>();
        let mut p = PacketBuilder::new(src, dst)
            .src_port(rng.random())
            .ttl(rng.random())
            .ident(rng.random());
        p = match rng.random_range(0..10) {
            0..=3 => {
                let flags = if rng.random_bool(0.5) {
                    rng.random()
                } else {
                    *[
                        SYN,
                        ACK,
                        ACK | PSH,
                        FIN | ACK,
                        RST,
                        RST | ACK,
                        SYN | ACK,
                        0,
                        FIN,
                        FIN | PSH | URG,
                    ]
                    .choose(rng)
                    .unwrap()
                };
                let payload: Vec<u8> = (0..rng.random_range(0..3) * 20)
                    .map(|_| rng.random())
                    .collect();
                p.tcp(port, flags).payload(&payload)
            }
            4 | 5 => p.udp(port),
            6 | 7 => {
                let types: &[u8] = if v6 {
                    &[1, 2, 3, 4, 128, 129, 133, 135, 136, 13, 17]
                } else {
                    &[0, 3, 4, 5, 8, 11, 12, 13, 14, 15, 16, 17, 18]
                };
                let t = if rng.random_bool(0.2) {
                    rng.random()
                } else {
                    *types.choose(rng).unwrap()
                };
                let code = rng.random_range(0..16);
                if rng.random_bool(0.3) {
                    // An error quoting a datagram of ours.
                    let quoted = PacketBuilder::new(dst, src).syn(port);
                    p.icmp_error_quoting(t, code, &quoted)
                } else {
                    p.icmp(t, code)
                }
            }
            8 => {
                let chunk = *[0, 1, 3, 6, 10, 11, rng.random()].choose(rng).unwrap();
                p.sctp(port, chunk)
            }
            _ => {
                let proto = *[
                    rng.random(),
                    IPPROTO_TCP,
                    IPPROTO_UDP,
                    IPPROTO_ICMP,
                    IPPROTO_ICMPV6,
                    IPPROTO_SCTP,
                    47,
                    50,
                    59,
                ]
                .choose(rng)
                .unwrap();
                let payload: Vec<u8> = (0..rng.random_range(0..48)).map(|_| rng.random()).collect();
                p.raw(proto, payload)
            }
        };
        for _ in 0..*[0, 0, 0, 1, 1, 2].choose(rng).unwrap() {
            p = p.vlan(rng.random_range(1..4095));
        }
        if v6 {
            let headers = *[0, 0, 0, 1, 2, 3, rng.random_range(4..=10)]
                .choose(rng)
                .unwrap();
            for _ in 0..headers {
                p = p.ext(match rng.random_range(0..4) {
                    0 => Ext::HopByHop,
                    1 => Ext::Routing,
                    2 => Ext::DestOpts,
                    _ => Ext::Fragment {
                        offset: if rng.random_bool(0.7) {
                            0
                        } else {
                            rng.random_range(1..8192)
                        },
                        more: rng.random(),
                    },
                });
            }
        } else {
            if rng.random_bool(0.3) {
                p = p.ipv4_options(rng.random_range(0..=10));
            }
            if rng.random_bool(0.25) {
                p = if rng.random_bool(0.5) {
                    p.ipv4_fragment(0, true)
                } else {
                    p.ipv4_fragment(rng.random_range(0..8192), rng.random())
                };
            }
        }
        if rng.random_bool(0.15) {
            // A tiny fragment, or a datagram whose L4 header is cut (both length fields agree).
            p = p.l4_len(rng.random_range(0..=24));
        }
        p
    }

    /// `frame` (built from `packet`) with one to three mutations of its headers.
    fn mutated(&mut self, packet: &PacketBuilder, frame: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        for _ in 0..self.rng.random_range(1..=3) {
            self.mutate(packet, &mut f);
        }
        f
    }

    fn mutate(&mut self, packet: &PacketBuilder, f: &mut Vec<u8>) {
        let rng = &mut self.rng;
        let l3 = packet.l3_offset();
        let l4 = packet.l4_offset();
        let v6 = packet.is_ipv6();
        let len = f.len();
        if len == 0 {
            return;
        }
        match rng.random_range(0..14) {
            // Bit flips, mostly in the headers.
            0 | 1 => {
                let span = if rng.random_bool(0.8) {
                    len.min(l4 + 24)
                } else {
                    len
                };
                for _ in 0..rng.random_range(1..=3) {
                    let bit = rng.random_range(0..span * 8);
                    f[bit / 8] ^= 1 << (bit % 8);
                }
            }
            // A random byte of the headers.
            2 => {
                let at = rng.random_range(0..len.min(l4 + 24));
                set8(f, at, rng.random());
            }
            // A cut anywhere.
            3 => f.truncate(rng.random_range(0..=len)),
            // IHL or IP version.
            4 => {
                let (old, v) = (f.get(l3).copied().unwrap_or(0), rng.random::<u8>());
                let value = if rng.random_bool(0.5) {
                    (old & 0xf0) | (v & 0x0f)
                } else {
                    (v & 0xf0) | (old & 0x0f)
                };
                set8(f, l3, value);
            }
            // The IP length field: IPv4 total length, IPv6 payload length (0: a jumbogram).
            5 => {
                let at = if v6 { l3 + 4 } else { l3 + 2 };
                let old = f
                    .get(at..at + 2)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                let value = match rng.random_range(0..4) {
                    0 => 0,
                    1 => old.wrapping_add(rng.random_range(1..=40)),
                    2 => old.wrapping_sub(rng.random_range(1..=40)),
                    _ => rng.random(),
                };
                set16(f, at, value);
            }
            // TCP data offset (or whatever lies there).
            6 => {
                let v = rng.random_range(0..16u8) << 4;
                set8(f, l4 + 12, v);
            }
            // More VLAN tags: a third one makes the frame non-IP.
            7 => {
                let tpid = if rng.random_bool(0.5) {
                    ETH_P_8021Q
                } else {
                    ETH_P_8021AD
                };
                let mut tag = tpid.to_be_bytes().to_vec();
                tag.extend_from_slice(&rng.random::<u16>().to_be_bytes());
                let at = (12 + 4 * rng.random_range(0..=(l3 - 14) / 4)).min(len);
                f.splice(at..at, tag);
            }
            // The EtherType.
            8 => {
                let t = [
                    ETH_P_IP,
                    ETH_P_IPV6,
                    ETH_P_8021Q,
                    ETH_P_8021AD,
                    0x0806,
                    rng.random(),
                ];
                set16(f, l3 - 2, *t.choose(rng).unwrap());
            }
            // A next-header or protocol field, to an extension header or an L4 protocol.
            9 => {
                let values = [
                    IPPROTO_HOPOPTS,
                    IPPROTO_ROUTING,
                    IPPROTO_DSTOPTS,
                    IPPROTO_FRAGMENT,
                    IPPROTO_AH,
                    IPPROTO_TCP,
                    IPPROTO_UDP,
                    IPPROTO_ICMP,
                    IPPROTO_ICMPV6,
                    IPPROTO_SCTP,
                    59,
                    rng.random(),
                ];
                let value = *values.choose(rng).unwrap();
                let at = if v6 {
                    let headers = (l4 - l3 - 40) / 8;
                    match rng.random_range(0..=headers) {
                        0 => l3 + 6,
                        h => l3 + 40 + 8 * (h - 1),
                    }
                } else {
                    l3 + 9
                };
                set8(f, at, value);
            }
            // An extension header's length (IPv6), grown inside the frame so the chain may
            // run past the parser's offsets; or the IPv4 fragment field.
            10 => {
                if v6 && l4 > l3 + 40 {
                    let at = l3 + 40 + 8 * rng.random_range(0..(l4 - l3 - 40) / 8);
                    // Lengths that end this header just short of, or just past, the offset the
                    // parser reads to (`parse_model::MAX_L4_OFFSET`), among others.
                    let limit = (parse_model::MAX_L4_OFFSET - at - 8) / 8;
                    let near = (limit + rng.random_range(0..2)).min(255) as u8;
                    let units = *[1, 2, 31, 255, near, near, near, rng.random()]
                        .choose(rng)
                        .unwrap();
                    set8(f, at + 1, units);
                    if rng.random_bool(0.7) && at + 8 <= f.len() {
                        // AH counts 4-byte words (plus two), the others 8-byte units (plus one).
                        let grown = usize::from(units) * 8;
                        f.splice(at + 8..at + 8, std::iter::repeat_n(0u8, grown));
                        let payload = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]);
                        set16(f, l3 + 4, payload.wrapping_add(grown as u16));
                    }
                } else if !v6 {
                    let value = if rng.random_bool(0.5) {
                        0x2000
                    } else {
                        rng.random()
                    };
                    set16(f, l3 + 6, value);
                }
            }
            // The IPv6 fragment field of a fragment header (or whatever lies there).
            11 => {
                if v6 && l4 > l3 + 40 {
                    let at = l3 + 40 + 8 * rng.random_range(0..(l4 - l3 - 40) / 8);
                    let value = *[0, 1, 8, 9, rng.random()].choose(rng).unwrap();
                    set16(f, at + 2, value);
                }
            }
            // Trailing bytes: Ethernet padding, or a frame longer than the test run's linear part
            // (the rest goes to fragments).
            12 => {
                let extra = if rng.random_bool(0.05) {
                    rng.random_range(3_000..4_200)
                } else {
                    rng.random_range(1..64)
                };
                f.extend((0..extra).map(|_| rng.random::<u8>()));
            }
            // The L4 header's first bytes (ports, ICMP type, SCTP chunk).
            _ => {
                let at = l4 + *[0, 1, 12, 13, rng.random_range(0..20)].choose(rng).unwrap();
                set8(f, at, rng.random());
            }
        }
    }
}

/// Sets the byte at `at`, if the frame (perhaps cut by an earlier mutation) still has it.
fn set8(f: &mut [u8], at: usize, value: u8) {
    if let Some(b) = f.get_mut(at) {
        *b = value;
    }
}

/// Sets the big-endian `u16` at `at`, if the frame still has it.
fn set16(f: &mut [u8], at: usize, value: u16) {
    if let Some(b) = f.get_mut(at..at + 2) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// `frame` cut one byte before, at and one byte after each of its header boundaries.
fn truncations(packet: &PacketBuilder, frame: &[u8]) -> Vec<Vec<u8>> {
    let l3 = packet.l3_offset();
    let l4 = packet.l4_offset();
    let mut bounds = vec![12, 14];
    bounds.extend((18..=l3).step_by(4));
    if packet.is_ipv6() {
        bounds.extend([l3 + 8, l3 + 40]);
        bounds.extend((l3 + 40..=l4).step_by(8).flat_map(|h| [h + 2, h + 8]));
    } else {
        bounds.extend([l3 + 20, l4]);
    }
    bounds.extend([l4 + 4, l4 + 8, l4 + 13, l4 + 16, l4 + 20]);
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .into_iter()
        .flat_map(|b| [b - 1, b, b + 1])
        .filter(|&cut| cut >= 14 && cut < frame.len())
        .map(|cut| frame[..cut].to_vec())
        .collect()
}
