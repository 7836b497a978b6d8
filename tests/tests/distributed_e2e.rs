//! End-to-end: a port scan split over six sources, each far below every threshold (real nmap,
//! ten ports each), raises one `distributed_scan` naming the target with a sample of the
//! sources, while a web server's visitors next to it raise nothing.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        NMAP_TIMEOUT, assert_no_other_alerts, connects, expect_alert_matching, nmap_lab,
        sampled_sources,
    },
    netns::Netns,
    services::Service,
};

#[test]
fn six_nmap_sources_of_ten_ports_each_raise_distributed_scan_for_the_target() {
    let test = "six_nmap_sources_of_ten_ports_each_raise_distributed_scan_for_the_target";
    let Some(mut lab) = nmap_lab(test) else {
        return;
    };
    let hosts: Vec<u8> = (4..10).collect();
    let scanners: Vec<Netns> = hosts
        .iter()
        .map(|h| {
            lab.add_host(&format!("s{h}"), *h)
                .expect("adding a scanner")
        })
        .collect();
    let target = lab.target_v4();
    let web = Service::tcp(&lab.target, IpAddr::V4(target), &[80, 443]).expect("the web server");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    // A busy web server's visitors: many connections, two ports.
    let visits = (0..100)
        .filter(|_| {
            connects(lab.benign.name(), SocketAddr::from((target, 80)))
                & connects(lab.benign.name(), SocketAddr::from((target, 443)))
        })
        .count();
    assert_eq!(visits, 100, "the web server answers");

    let target_text = target.to_string();
    for (i, ns) in scanners.iter().enumerate() {
        let ports: Vec<String> = (0..10).map(|p| (2000 + i * 10 + p).to_string()).collect();
        ns.nmap(
            &[
                "-sS",
                "-p",
                &ports.join(","),
                "-n",
                "-Pn",
                "-T4",
                "--max-retries",
                "0",
                &target_text,
            ],
            NMAP_TIMEOUT,
        );
    }
    let alert = expect_alert_matching(&daemon, "distributed_scan of the target", |a| {
        a["kind"] == "distributed_scan" && a["target"] == target_text.as_str()
    });
    assert_eq!(alert["source"], "*", "{alert}");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(alert["distinct_ports"].as_u64().unwrap() >= 40, "{alert}");
    let scanner_addrs: HashSet<String> =
        hosts.iter().map(|h| lab.host_v4(*h).to_string()).collect();
    // The sample is the last distinct sources that added a port: the scanners, and the
    // visitor whose first connections added ports 80 and 443 (README: why drop mode does not
    // block on this finding by default).
    let sample = sampled_sources(&alert);
    let sampled_scanners = sample
        .iter()
        .filter(|s| scanner_addrs.contains(**s))
        .count();
    assert!(sampled_scanners >= 4, "{alert}");
    let benign = lab.benign_v4().to_string();
    for s in &sample {
        assert!(
            scanner_addrs.contains(*s) || *s == benign,
            "{s} sent nothing to the target: {alert}"
        );
    }
    // Nothing else: no scanner crossed a threshold of its own, the visitors none.
    assert_no_other_alerts(&daemon, |a| a["kind"] == "distributed_scan");
    drop(daemon);
    web.stop().expect("stopping the web server");
}
