//! Throughput with real packets (`cargo xtask bench --traffic`): `trafgen`
//! (netsniff-ng) drives a veth pair between two throwaway namespaces as fast as it can, and
//! the receiving end's packet counters give packets per second processed, with nothing
//! attached, with the empty XDP program attached natively, and with the real agent
//! (`scanwatch run`, native XDP + TC egress, monitor mode), in the same run.
//!
//! Mixes (frames of 54 bytes to an address the receiver does not own, so its stack drops them
//! at the route lookup and answers nothing):
//! - `established`: ACKs of one TCP connection (the fast path);
//! - `syn_probe`: SYNs from 4 sources to ports 1..65535 in turn (tracked probes);
//! - `spoofed_storm`: SYNs from random sources (the admission filter);
//! - the attacker's choices: `spoofed_pairs` (two SYNs per forged source, each to a new port:
//!   the cheapest way past the admission filter), `port_spray` (eight per forged source, below
//!   every threshold), `forged_fin_ack` (FIN|ACK of no connection, from random sources: a socket
//!   lookup each) and `forged_web` (an HTTP request on no connection, from random sources, to
//!   a web port; 93-byte frames).
//!
//! On a veth, the receiver's XDP and stack run on the sending CPU (the peer's NAPI), so the
//! rate processed is the generator's rate slowed by the receiver's cost; packets the receiver
//! cannot take are dropped at the sender's veth (`tx_dropped`). Each configuration runs for
//! `--seconds` (5). Arguments: `--seconds N`, `--runs N` (1), mix names to filter. Nothing is
//! asserted. Namespaces only.

use std::{
    fmt::Write as _,
    process::{Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    EbpfLoader,
    programs::{Xdp, XdpMode},
};
use scanwatch_common::programs::EMPTY;
use scanwatch_tests::{
    daemon::Daemon,
    lab::Lab,
    netns::{Netns, Veth, in_netns},
    process::TempDir,
    require_root,
};

/// Addresses of the pair; the mixes send to 198.18.0.1, routed nowhere in the receiver.
const GEN_ADDR: &str = "10.77.0.2";
const RX_ADDR: &str = "10.77.0.1";

/// A trafgen configuration body per mix; `{da}`/`{sa}` are the MAC addresses.
fn mixes() -> Vec<(&'static str, String)> {
    let eth = "eth(da={da}, sa={sa})";
    // Forged sources in turn: two byte counters of coprime periods (251, 255) give 64,005
    // addresses before one repeats; every template of a packet group steps them alike, so the
    // group's packets share their source.
    let forged =
        "ipv4(sa=10.200.0.0, sa[2]=dinc(0, 250), sa[3]=dinc(0, 254), da=198.18.0.1, ttl=64)";
    // `per_source` SYNs from each forged source, each to a new port.
    let new_ports = |per_source: u16| -> String {
        let mut body = String::new();
        for i in 0..per_source {
            let _ = writeln!(
                body,
                "{{ {eth}, {forged}, tcp(sp=51000, dp=dinc({}, 65535, {per_source}), syn, \
                 seq=drnd(), win=1024) }}",
                1 + i
            );
        }
        body
    };
    vec![
        (
            "established",
            format!(
                "{{ {eth}, ipv4(sa=10.77.0.2, da=198.18.0.1, ttl=64, df), \
                 tcp(sp=40000, dp=443, ack, seq=drnd(), aseq=1000, win=502) }}"
            ),
        ),
        (
            "syn_probe",
            format!(
                "{{ {eth}, ipv4(sa=10.77.1.1, sa[3]=dinc(1, 4), da=198.18.0.1, ttl=64), \
                 tcp(sp=51000, dp=dinc(1, 65535), syn, seq=drnd(), win=1024) }}"
            ),
        ),
        (
            "spoofed_storm",
            format!(
                "{{ {eth}, ipv4(sa=drnd(), da=198.18.0.1, ttl=64), \
                 tcp(sp=drnd(), dp=80, syn, seq=drnd(), win=1024) }}"
            ),
        ),
        ("spoofed_pairs", new_ports(2)),
        ("port_spray", new_ports(8)),
        (
            "forged_fin_ack",
            format!(
                "{{ {eth}, ipv4(sa=drnd(), da=198.18.0.1, ttl=64), \
                 tcp(sp=drnd(), dp=443, fin, ack, seq=drnd(), aseq=drnd(), win=502) }}"
            ),
        ),
        (
            "forged_web",
            format!(
                "{{ {eth}, ipv4(sa=drnd(), da=198.18.0.1, ttl=64), \
                 tcp(sp=drnd(), dp=80, ack, psh, seq=drnd(), aseq=drnd(), win=502), \
                 \"GET /admin.php HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\" }}"
            ),
        ),
    ]
}

/// What is attached to the receiving veth.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attached {
    Nothing,
    EmptyXdp,
    Agent,
}

impl Attached {
    const ALL: [Self; 3] = [Self::Nothing, Self::EmptyXdp, Self::Agent];

    const fn name(self) -> &'static str {
        match self {
            Self::Nothing => "none",
            Self::EmptyXdp => "empty XDP",
            Self::Agent => "agent",
        }
    }
}

/// One timed run's counters.
#[derive(Clone, Copy, Default)]
struct Counts {
    sent: u64,
    received: u64,
    dropped: u64,
    seconds: f64,
}

impl Counts {
    #[expect(
        clippy::cast_precision_loss,
        reason = "packet counts are far below 2^52"
    )]
    fn pps(&self) -> f64 {
        self.received as f64 / self.seconds
    }
}

struct Args {
    seconds: u64,
    runs: usize,
    filters: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        seconds: 5,
        runs: 1,
        filters: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" | "--runs" => {
                let n: u64 = it
                    .next()
                    .with_context(|| format!("{arg} needs a value"))?
                    .parse()
                    .with_context(|| format!("{arg} needs a number"))?;
                ensure!((1..=60).contains(&n), "{arg} must be 1..=60");
                if arg == "--seconds" {
                    args.seconds = n;
                } else {
                    args.runs = usize::try_from(n)?;
                }
            }
            _ if arg.starts_with('-') => bail!("unknown argument {arg}"),
            _ => args.filters.push(arg),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("traffic bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The generator's and the receiver's namespaces, joined by a veth pair.
struct Pair {
    gen_ns: Netns,
    rx_ns: Netns,
    gen_if: String,
    rx_if: String,
    _veth: Veth,
}

impl Pair {
    fn new() -> Result<Self> {
        let gen_ns = Netns::unique("tgen")?;
        let rx_ns = Netns::unique("trx")?;
        let tag = std::process::id() % 100_000;
        let (gen_if, rx_if) = (format!("tg{tag}"), format!("tr{tag}"));
        let veth = Veth::new(&gen_ns, &gen_if, &rx_ns, &rx_if)?;
        for (ns, dev, addr) in [(&gen_ns, &gen_if, GEN_ADDR), (&rx_ns, &rx_if, RX_ADDR)] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(Self {
            gen_ns,
            rx_ns,
            gen_if,
            rx_if,
            _veth: veth,
        })
    }

    fn mac(ns: &Netns, dev: &str) -> Result<String> {
        let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
        let links: serde_json::Value = serde_json::from_str(&out)?;
        Ok(links[0]["address"]
            .as_str()
            .context("no MAC address")?
            .to_owned())
    }

    /// `stats64` counters of `dev` in `ns`: (rx packets, tx packets, tx dropped).
    fn counters(ns: &Netns, dev: &str) -> Result<(u64, u64, u64)> {
        let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev])?;
        let links: serde_json::Value = serde_json::from_str(&out)?;
        let s = &links[0]["stats64"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        Ok((
            n(&s["rx"]["packets"]),
            n(&s["tx"]["packets"]),
            n(&s["tx"]["dropped"]),
        ))
    }

    /// Runs trafgen with `config` for `seconds`; the receiver's and sender's counter deltas.
    fn blast(&self, config: &std::path::Path, seconds: u64) -> Result<Counts> {
        let (rx0, ..) = Self::counters(&self.rx_ns, &self.rx_if)?;
        let (_, tx0, drop0) = Self::counters(&self.gen_ns, &self.gen_if)?;
        let start = Instant::now();
        let out = self
            .gen_ns
            .command("timeout")
            .args(["-s", "INT", "-k", "5", &seconds.to_string(), "trafgen"])
            .args(["-o", &self.gen_if, "-i"])
            .arg(config)
            .args(["-P", "1", "-C", "-Q"])
            .stdin(Stdio::null())
            .output()
            .context("running trafgen")?;
        let seconds = start.elapsed().as_secs_f64();
        // timeout(1) exits 124 when it stopped trafgen, which is the plan.
        ensure!(
            out.status.code() == Some(124) || out.status.success(),
            "trafgen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Let the receiver's queue drain.
        thread::sleep(Duration::from_millis(200));
        let (rx1, ..) = Self::counters(&self.rx_ns, &self.rx_if)?;
        let (_, tx1, drop1) = Self::counters(&self.gen_ns, &self.gen_if)?;
        Ok(Counts {
            sent: tx1 - tx0,
            received: rx1 - rx0,
            dropped: drop1 - drop0,
            seconds,
        })
    }
}

fn run() -> Result<()> {
    require_root();
    let args = parse_args()?;
    ensure!(
        Command::new("trafgen")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok(),
        "trafgen is missing: `apt-get install netsniff-ng` (cargo xtask bench --traffic does)"
    );
    // The agent needs a lab to borrow; its namespaces stay idle.
    let lab = Lab::new().context("building the lab")?;
    let pair = Pair::new()?;
    let (da, sa) = (
        Pair::mac(&pair.rx_ns, &pair.rx_if)?,
        Pair::mac(&pair.gen_ns, &pair.gen_if)?,
    );
    let dir = TempDir::new("traffic-bench")?;
    let mixes: Vec<_> = mixes()
        .into_iter()
        .filter(|(name, _)| {
            args.filters.is_empty() || args.filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    let mut report = String::new();
    writeln!(
        report,
        "{:<15} {:>3} {:>10} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "mix", "run", "attached", "sent/s", "received/s", "dropped/s", "/none", "/empty"
    )?;
    for (name, body) in mixes {
        let config = dir.path().join(format!("{name}.cfg"));
        std::fs::write(&config, body.replace("{da}", &da).replace("{sa}", &sa))?;
        for run in 1..=args.runs {
            let mut results = Vec::new();
            for attached in Attached::ALL {
                let counts = blast_with(&lab, &pair, attached, &config, args.seconds)
                    .with_context(|| format!("{name} with {}", attached.name()))?;
                results.push((attached, counts));
            }
            let base = |which: Attached| {
                results
                    .iter()
                    .find(|(a, _)| *a == which)
                    .map_or(f64::NAN, |(_, c)| c.pps())
            };
            for (attached, c) in &results {
                #[expect(clippy::cast_precision_loss, reason = "packet counts")]
                let per_s = |n: u64| n as f64 / c.seconds;
                writeln!(
                    report,
                    "{name:<15} {run:>3} {:>10} {:>12.0} {:>12.0} {:>12.0} {:>8.3} {:>8.3}",
                    attached.name(),
                    per_s(c.sent),
                    c.pps(),
                    per_s(c.dropped),
                    c.pps() / base(Attached::Nothing),
                    c.pps() / base(Attached::EmptyXdp),
                )?;
            }
            print!("{report}");
            report.clear();
        }
    }
    println!(
        "received/s: the receiving veth's rx packets per second (processed: XDP, then the stack's \
         drop at the route lookup); /none and /empty: ratio to nothing attached and to the empty \
         XDP program, same run"
    );
    Ok(())
}

/// One timed run with `attached` on the receiving veth.
fn blast_with(
    lab: &Lab,
    pair: &Pair,
    attached: Attached,
    config: &std::path::Path,
    seconds: u64,
) -> Result<Counts> {
    match attached {
        Attached::Nothing => pair.blast(config, seconds),
        Attached::EmptyXdp => {
            let rx_if = pair.rx_if.clone();
            // Loaded and attached inside the receiver's namespace (the interface index is
            // resolved there); detached when `ebpf` drops.
            let ebpf = in_netns(pair.rx_ns.name(), move || -> Result<aya::Ebpf> {
                let mut ebpf = EbpfLoader::new().load(scanwatch::kernel::object::EMPTY_OBJECT)?;
                let xdp: &mut Xdp = ebpf
                    .program_mut(EMPTY)
                    .context("empty program missing")?
                    .try_into()?;
                xdp.load()?;
                xdp.attach(&rx_if, XdpMode::Driver)
                    .context("attaching the empty program natively")?;
                Ok(ebpf)
            })??;
            let counts = pair.blast(config, seconds);
            drop(ebpf);
            counts
        }
        Attached::Agent => {
            let daemon = Daemon::start_shared_in(
                lab,
                pair.rx_ns.name(),
                &pair.rx_if,
                "traffic",
                &["--xdp-mode", "native"],
            )?;
            let counts = pair.blast(config, seconds);
            drop(daemon);
            counts
        }
    }
}
