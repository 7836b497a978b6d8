//! The attribution matrix: every (tool, mode) whose probes the trait table describes, run with
//! the Debian builds from a lab's attacker and kept as a small capture
//! (`tests/fixtures/tools/matrix/<cell>.pcap`), with the name attribution must give each.
//!
//! [`record`] makes the captures (`tests/tests/tool_matrix.rs`, an ignored test run by hand when
//! a tool or the table changes); the matrix test replays them with `scanwatch replay` and fails
//! on any wrong name. Every address is the lab's ([`LAB_K`]): the captures replay anywhere.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use crate::{capture::Recorder, lab::Lab};

/// The `K` of the lab the captures were recorded in (`10.K.0.0/24`, `fd5c:a7:0:K::/64`): the
/// first lab of a test process.
pub const LAB_K: u8 = 10;

/// Longest one scanner run may take before it is killed.
pub const RUN_LIMIT: Duration = Duration::from_secs(40);

/// What attribution must say of a cell's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// This tool (`tool.name`), or `unknown`; any other name is wrong.
    Tool(&'static str),
    /// `unknown`: the probes are the operating system's (nmap -sT calls connect()), so naming
    /// any tool is wrong.
    Os,
}

/// The lab's addresses and the attacker's interface, as a cell's arguments need them.
#[derive(Clone, Debug)]
pub struct Scene {
    pub target_v4: String,
    pub target_v6: String,
    pub attacker_v4: String,
    pub attacker_v6: String,
    /// The target's extra /24 (`10.K.1.0/24`): sweeps.
    pub sweep: String,
    /// `10.K.1.x`, as hping3's `--rand-dest` takes it.
    pub sweep_x: String,
    pub iface: String,
    /// The target's MAC: the next hop masscan and zmap write into their frames.
    pub mac: String,
}

/// One (tool, mode) run.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// The capture's file stem.
    pub name: &'static str,
    /// The program run.
    pub program: &'static str,
    /// The mode, as the docs' matrix shows it (the tool's own flag).
    pub mode: &'static str,
    pub ipv6: bool,
    pub expect: Expect,
    /// Probes (frames from the attacker) kept in the capture: enough to cross the kind's
    /// default threshold, few enough to keep the file a few KB.
    pub probes: usize,
    args: fn(&Scene) -> Vec<String>,
}

impl Cell {
    /// The source its alerts name: the attacker's address, or its /64.
    pub fn source(&self) -> String {
        if self.ipv6 {
            format!("fd5c:a7:0:{LAB_K:x}::/64")
        } else {
            format!("10.{LAB_K}.0.2")
        }
    }

    /// Its capture.
    pub fn fixture(&self) -> PathBuf {
        fixtures().join(format!("{}.pcap", self.name))
    }
}

/// Where the captures live.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tools/matrix")
}

/// The `--local` networks of the recording lab's target, for `scanwatch replay`.
pub fn locals() -> Vec<String> {
    vec![
        format!("10.{LAB_K}.0.1/32"),
        format!("10.{LAB_K}.1.0/24"),
        format!("fd5c:a7:0:{LAB_K:x}::1/128"),
    ]
}

/// Words of a command line.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// nmap with `scan` against `target`, fast and bounded (as `e2e::NMAP_FAST`).
fn nmap(scan: &str, target: &str) -> Vec<String> {
    let mut w = words(scan);
    w.extend(words("-n -T4 --max-retries 0 --host-timeout 20s"));
    w.push(target.to_owned());
    w
}

macro_rules! nmap_cell {
    ($name:literal, $mode:literal, v4, $scan:literal, $probes:expr) => {
        Cell {
            name: $name,
            program: "nmap",
            mode: $mode,
            ipv6: false,
            expect: Expect::Tool("nmap"),
            probes: $probes,
            args: |s| nmap($scan, &s.target_v4),
        }
    };
    ($name:literal, $mode:literal, v6, $scan:literal, $probes:expr) => {
        Cell {
            name: $name,
            program: "nmap",
            mode: $mode,
            ipv6: true,
            expect: Expect::Tool("nmap"),
            probes: $probes,
            args: |s| nmap(concat!("-6 ", $scan), &s.target_v6),
        }
    };
}

/// hping3 with `flags` to ports 1, 2, 3, … of the target.
macro_rules! hping3_cell {
    ($name:literal, $mode:literal, $flags:literal) => {
        Cell {
            name: $name,
            program: "hping3",
            mode: $mode,
            ipv6: false,
            expect: Expect::Tool("hping3"),
            probes: 30,
            args: |s| hping3($flags, s),
        }
    };
}

/// The matrix, in the order the docs show it.
pub const CELLS: &[Cell] = &[
    nmap_cell!("nmap_sS_v4", "-sS", v4, "-sS -Pn -p 1-100", 40),
    Cell {
        name: "nmap_sT_v4",
        program: "nmap",
        mode: "-sT",
        ipv6: false,
        expect: Expect::Os,
        probes: 40,
        args: |s| nmap("-sT -Pn -p 1-100", &s.target_v4),
    },
    nmap_cell!("nmap_sU_v4", "-sU", v4, "-sU -Pn -p 1-100", 40),
    nmap_cell!("nmap_sF_v4", "-sF", v4, "-sF -Pn -p 1-100", 30),
    nmap_cell!("nmap_sN_v4", "-sN", v4, "-sN -Pn -p 1-100", 30),
    nmap_cell!("nmap_sX_v4", "-sX", v4, "-sX -Pn -p 1-100", 30),
    nmap_cell!("nmap_sA_v4", "-sA", v4, "-sA -Pn -p 1-100", 30),
    nmap_cell!("nmap_sW_v4", "-sW", v4, "-sW -Pn -p 1-100", 30),
    nmap_cell!("nmap_sM_v4", "-sM", v4, "-sM -Pn -p 1-100", 30),
    nmap_cell!("nmap_sO_v4", "-sO", v4, "-sO -Pn -p 0-255", 40),
    nmap_cell!("nmap_sY_v4", "-sY", v4, "-sY -Pn -p 1-100", 30),
    nmap_cell!("nmap_sZ_v4", "-sZ", v4, "-sZ -Pn -p 1-100", 30),
    Cell {
        name: "nmap_sn_v4",
        program: "nmap",
        mode: "-sn",
        ipv6: false,
        expect: Expect::Tool("nmap"),
        probes: 80,
        args: |s| nmap("-sn", &s.sweep),
    },
    nmap_cell!("nmap_sS_v6", "-sS", v6, "-sS -Pn -p 1-100", 40),
    Cell {
        name: "nmap_sT_v6",
        program: "nmap",
        mode: "-sT",
        ipv6: true,
        expect: Expect::Os,
        probes: 40,
        args: |s| nmap("-6 -sT -Pn -p 1-100", &s.target_v6),
    },
    nmap_cell!("nmap_sU_v6", "-sU", v6, "-sU -Pn -p 1-100", 40),
    nmap_cell!("nmap_sF_v6", "-sF", v6, "-sF -Pn -p 1-100", 30),
    nmap_cell!("nmap_sN_v6", "-sN", v6, "-sN -Pn -p 1-100", 30),
    nmap_cell!("nmap_sX_v6", "-sX", v6, "-sX -Pn -p 1-100", 30),
    nmap_cell!("nmap_sA_v6", "-sA", v6, "-sA -Pn -p 1-100", 30),
    nmap_cell!("nmap_sW_v6", "-sW", v6, "-sW -Pn -p 1-100", 30),
    nmap_cell!("nmap_sM_v6", "-sM", v6, "-sM -Pn -p 1-100", 30),
    nmap_cell!("nmap_sO_v6", "-sO", v6, "-sO -Pn -p 0-255", 40),
    nmap_cell!("nmap_sY_v6", "-sY", v6, "-sY -Pn -p 1-100", 30),
    nmap_cell!("nmap_sZ_v6", "-sZ", v6, "-sZ -Pn -p 1-100", 30),
    Cell {
        name: "masscan_tcp_v4",
        program: "masscan",
        mode: "-p",
        ipv6: false,
        expect: Expect::Tool("masscan"),
        probes: 40,
        args: |s| masscan(&s.target_v4, "-p1-100", s),
    },
    Cell {
        name: "masscan_udp_v4",
        program: "masscan",
        mode: "-pU:",
        ipv6: false,
        expect: Expect::Tool("masscan"),
        probes: 40,
        args: |s| masscan(&s.target_v4, "-pU:1-100", s),
    },
    Cell {
        name: "masscan_icmp_v4",
        program: "masscan",
        mode: "--ping",
        ipv6: false,
        expect: Expect::Tool("masscan"),
        probes: 40,
        args: |s| masscan(&s.sweep, "--ping", s),
    },
    Cell {
        name: "zmap_tcp_v4",
        program: "zmap",
        mode: "-M tcp_synscan",
        ipv6: false,
        expect: Expect::Tool("zmap"),
        probes: 40,
        args: |s| zmap("tcp_synscan", s),
    },
    Cell {
        name: "zmap_icmp_v4",
        program: "zmap",
        mode: "-M icmp_echoscan",
        ipv6: false,
        expect: Expect::Tool("zmap"),
        probes: 40,
        args: |s| zmap("icmp_echoscan", s),
    },
    Cell {
        name: "zmap_udp_v4",
        program: "zmap",
        mode: "-M udp",
        ipv6: false,
        expect: Expect::Tool("zmap"),
        probes: 40,
        args: |s| zmap("udp", s),
    },
    hping3_cell!("hping3_syn_v4", "-S", "-S"),
    hping3_cell!("hping3_fin_v4", "-F", "-F"),
    hping3_cell!("hping3_xmas_v4", "-F -P -U", "-F -P -U"),
    hping3_cell!("hping3_null_v4", "(no flag option)", ""),
    hping3_cell!("hping3_ack_v4", "-A", "-A"),
    hping3_cell!("hping3_udp_v4", "-2", "-2"),
    Cell {
        name: "hping3_icmp_v4",
        program: "hping3",
        mode: "-1 --rand-dest",
        ipv6: false,
        expect: Expect::Tool("hping3"),
        probes: 40,
        args: |s| {
            let mut w = words("-1 --rand-dest -c 60 -i u3000 -q -I");
            w.push(s.iface.clone());
            w.push(s.sweep_x.clone());
            w
        },
    },
];

fn hping3(flags: &str, s: &Scene) -> Vec<String> {
    let mut w = words(flags);
    w.extend(words("-p ++1 -c 40 -i u3000 -q"));
    w.push(s.target_v4.clone());
    w
}

/// masscan to `target` (IPv4: Debian's 1.3.2 takes no IPv6 target).
fn masscan(target: &str, ports: &str, s: &Scene) -> Vec<String> {
    let source = &s.attacker_v4;
    let mut w = vec![target.to_owned(), ports.to_owned()];
    w.extend(words("--rate 500 --wait 0 --interface"));
    w.extend([s.iface.clone(), "--router-mac".into(), s.mac.clone()]);
    w.extend(["--source-ip".into(), source.clone()]);
    w
}

/// zmap's `module` over the sweep /24 (`-b /dev/null`: its default blocklist excludes
/// 10.0.0.0/8), port 80 (53 for UDP).
fn zmap(module: &str, s: &Scene) -> Vec<String> {
    let port = if module == "udp" { "53" } else { "80" };
    let mut w = vec!["-M".to_owned(), module.to_owned(), "-p".into(), port.into()];
    w.extend(["-i".into(), s.iface.clone(), "-G".into(), s.mac.clone()]);
    w.extend(["-S".into(), s.attacker_v4.clone()]);
    w.extend(words("-b /dev/null -r 1000 -c 0 -q"));
    w.push(s.sweep.clone());
    w
}

/// The lab's addresses for the cells' arguments.
pub fn scene(lab: &Lab) -> Result<Scene> {
    let mac = lab
        .target
        .exec(&["cat", &format!("/sys/class/net/{}/address", lab.target_if)])
        .context("reading the target's MAC address")?
        .trim()
        .to_owned();
    Ok(Scene {
        target_v4: lab.target_v4().to_string(),
        target_v6: lab.target_v6().to_string(),
        attacker_v4: lab.attacker_v4().to_string(),
        attacker_v6: lab.attacker_v6().to_string(),
        sweep: lab.sweep_net(),
        sweep_x: format!("10.{}.1.x", lab.k()),
        iface: lab.attacker_if.clone(),
        mac,
    })
}

/// Runs `cell` from the lab's attacker while capturing the target's interface, and writes the
/// frames to and from the attacker (ARP and neighbour discovery left out) up to its
/// `probes`-th frame from the attacker into `out`. Returns the number of frames written.
pub fn record(lab: &Lab, scene: &Scene, cell: &Cell, out: &Path) -> Result<usize> {
    ensure!(
        lab.k() == LAB_K,
        "the matrix is recorded in the lab 10.{LAB_K}.0.0/24 (the test process's first lab); \
         run the recording test alone"
    );
    let recorder = Recorder::start(lab.target.name(), &lab.target_if)?;
    let args = (cell.args)(scene);
    let run = lab
        .attacker
        .command("timeout")
        .args(["-k", "2", &RUN_LIMIT.as_secs().to_string(), cell.program])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", cell.program))?;
    // Late answers.
    thread::sleep(Duration::from_millis(300));
    let captured = recorder.finish()?;
    ensure!(
        run.status.success(),
        "{} {args:?} failed ({}):\n{}\n{}",
        cell.program,
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let attacker = [
        IpAddr::from(lab.attacker_v4()),
        IpAddr::from(lab.attacker_v6()),
    ];
    let mut sent = 0;
    let kept = captured.retain(|frame| {
        let Some((src, dst, nd)) = ip_ends(frame) else {
            return false;
        };
        if nd || sent >= cell.probes {
            return false;
        }
        if attacker.contains(&src) {
            sent += 1;
            true
        } else {
            attacker.contains(&dst)
        }
    });
    ensure!(
        sent >= cell.probes.min(20),
        "{}: only {sent} probes captured",
        cell.name
    );
    kept.write_pcap(out)?;
    Ok(kept.len())
}

/// An Ethernet frame's IP source and destination, and whether it is neighbour discovery
/// (ICMPv6 133..=137), which no cell needs.
fn ip_ends(frame: &[u8]) -> Option<(IpAddr, IpAddr, bool)> {
    match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ip = frame.get(14..34)?;
            let src: [u8; 4] = ip[12..16].try_into().ok()?;
            let dst: [u8; 4] = ip[16..20].try_into().ok()?;
            Some((
                Ipv4Addr::from(src).into(),
                Ipv4Addr::from(dst).into(),
                false,
            ))
        }
        [0x86, 0xdd] => {
            let ip = frame.get(14..54)?;
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            let nd = ip[6] == 58 && frame.get(54).is_some_and(|t| (133..=137).contains(t));
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into(), nd))
        }
        _ => None,
    }
}
