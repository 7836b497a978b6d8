//! What naming the process behind egress scans costs (`cargo xtask bench --sockets`): the TC
//! egress program of the product object, attached to a lab's monitored host with its recording
//! of senders (`OWNERS_ON`) on and then off, timed by the kernel's own BPF statistics
//! (`kernel.bpf_stats_enabled`) over real sockets:
//! - `new_sockets`: a TCP connect to a closed port of the lab's peer, each from a new socket
//!   (the socket's first packet: the record is written);
//! - `one_socket_new_flows`: one UDP socket sending to a new port each time (a new flow of a
//!   recorded socket: the record is only looked up);
//! - `one_flow`: one UDP socket sending to one port (an existing flow).
//!
//! The difference between on and off, per packet, is the cost of recording and looking up
//! senders. Arguments: `--packets N` (20000), `--runs N` (3). Nothing is asserted. Namespaces
//! only.

use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use scanwatch_tests::{harness::Harness, lab::Lab, netns::in_netns, require_root};

/// A closed port of the peer: connects are refused at once.
const CLOSED_PORT: u16 = 9;

#[derive(Clone, Copy, Debug)]
enum Workload {
    NewSockets,
    OneSocketNewFlows,
    OneFlow,
}

impl Workload {
    const ALL: [Self; 3] = [Self::NewSockets, Self::OneSocketNewFlows, Self::OneFlow];

    const fn name(self) -> &'static str {
        match self {
            Self::NewSockets => "new_sockets",
            Self::OneSocketNewFlows => "one_socket_new_flows",
            Self::OneFlow => "one_flow",
        }
    }

    /// Sends `packets` packets of this workload to `peer` (in the sender's namespace).
    fn send(self, peer: Ipv4Addr, packets: u32) -> Result<()> {
        match self {
            Self::NewSockets => {
                let to = SocketAddrV4::new(peer, CLOSED_PORT).into();
                for _ in 0..packets {
                    // Refused: the peer's reset answers the SYN.
                    let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
                }
            }
            Self::OneSocketNewFlows | Self::OneFlow => {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                for i in 0..packets {
                    let port = match self {
                        Self::OneFlow => 40_000,
                        _ => 1_024 + (i % 60_000) as u16,
                    };
                    socket.send_to(b"x", SocketAddrV4::new(peer, port))?;
                }
            }
        }
        Ok(())
    }
}

struct Args {
    packets: u32,
    runs: u32,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        packets: 20_000,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = |it: &mut dyn Iterator<Item = String>| -> Result<u32> {
            it.next()
                .with_context(|| format!("{arg} needs a value"))?
                .parse()
                .with_context(|| format!("{arg}: not a number"))
        };
        match arg.as_str() {
            "--packets" => args.packets = value(&mut it)?,
            "--runs" => args.runs = value(&mut it)?,
            other => bail!("unknown argument {other} (--packets N, --runs N)"),
        }
    }
    Ok(args)
}

/// ns per run of the egress program over one workload, with senders recorded or not.
fn measure(lab: &Lab, owners: bool, workload: Workload, packets: u32) -> Result<f64> {
    let mut h = Harness::load_owners(owners)?;
    let iface = lab.target_if.clone();
    let h = in_netns(lab.target.name(), move || -> Result<Harness> {
        h.attach_egress(&iface)?;
        Ok(h)
    })??;
    let peer = lab.attacker_v4();
    let (time0, runs0) = h.egress_run_stats()?;
    in_netns(lab.target.name(), move || workload.send(peer, packets))??;
    let (time1, runs1) = h.egress_run_stats()?;
    let runs = runs1.saturating_sub(runs0);
    if runs < u64::from(packets) {
        bail!(
            "{}: the egress program ran {runs} times for {packets} packets",
            workload.name()
        );
    }
    Ok(time1.saturating_sub(time0).as_nanos() as f64 / runs as f64)
}

fn run() -> Result<()> {
    require_root();
    let args = parse_args()?;
    let lab = Lab::new().context("building the lab")?;
    // Statistics are kept while this fd is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    println!(
        "scanwatch socket bench: TC egress program, {} packets per workload, median of {} runs",
        args.packets, args.runs
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "workload", "off ns", "on ns", "on - off"
    );
    for workload in Workload::ALL {
        let mut results = [Vec::new(), Vec::new()];
        for _ in 0..args.runs {
            for (i, owners) in [false, true].into_iter().enumerate() {
                results[i].push(measure(&lab, owners, workload, args.packets)?);
            }
        }
        let [off, on] = results.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        println!(
            "{:<22} {off:>9.0} {on:>9.0} {:>9.0}",
            workload.name(),
            on - off
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socket bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
