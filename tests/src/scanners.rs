//! The third-party scanners the tool-attribution tests run from the lab's attacker namespace
//! (masscan, zmap, hping3; nmap has `Netns::nmap`): one invocation each, bounded in rate,
//! count and time, aimed at the lab's namespace addresses only.

use std::{process::Stdio, time::Duration};

use crate::lab::Lab;

/// Longest a scanner run may take before it is killed.
pub const SCANNER_LIMIT: Duration = Duration::from_secs(30);

/// A scanner other than nmap.
#[derive(Clone, Copy, Debug)]
pub enum Scanner {
    /// SYNs to ports 1-100 of the target at 500 packets/s.
    Masscan,
    /// SYNs to port 80 of every host of the target's /24 at 1000 packets/s: a host sweep.
    Zmap,
    /// 60 SYNs to ports 1, 2, 3, ... of the target, 2 ms apart.
    Hping3,
}

impl Scanner {
    /// The program's name (also what the alert's `tool.name` says).
    pub const fn program(self) -> &'static str {
        match self {
            Self::Masscan => "masscan",
            Self::Zmap => "zmap",
            Self::Hping3 => "hping3",
        }
    }

    /// The detection kind the scan raises.
    pub const fn kind(self) -> &'static str {
        match self {
            Self::Masscan | Self::Hping3 => "port_scan",
            Self::Zmap => "host_sweep",
        }
    }

    /// Runs the scan from the attacker namespace; fails the test unless the scanner succeeds.
    pub fn run(self, lab: &Lab) {
        let (source, target, net) = (
            lab.attacker_v4().to_string(),
            lab.target_v4().to_string(),
            lab.sweep_net(),
        );
        let mac = target_mac(lab);
        let args: Vec<&str> = match self {
            Self::Masscan => vec![
                &target,
                "-p1-100",
                "--rate",
                "500",
                "--wait",
                "0",
                "--interface",
                &lab.attacker_if,
                "--router-mac",
                &mac,
                "--source-ip",
                &source,
            ],
            // `-b /dev/null`: zmap's default blocklist excludes 10.0.0.0/8.
            Self::Zmap => vec![
                "-p",
                "80",
                "-i",
                &lab.attacker_if,
                "-G",
                &mac,
                "-S",
                &source,
                "-b",
                "/dev/null",
                "-r",
                "1000",
                "-c",
                "0",
                "-q",
                &net,
            ],
            Self::Hping3 => vec!["-S", "-p", "++1", "-c", "60", "-i", "u2000", "-q", &target],
        };
        let program = self.program();
        let out = lab
            .attacker
            .command("timeout")
            .args(["-k", "2", &SCANNER_LIMIT.as_secs().to_string(), program])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The MAC address of the target's interface: the next hop masscan and zmap must be given
/// (they write their own Ethernet headers).
fn target_mac(lab: &Lab) -> String {
    lab.target
        .exec(&["cat", &format!("/sys/class/net/{}/address", lab.target_if)])
        .expect("reading the target's MAC address")
        .trim()
        .to_owned()
}
