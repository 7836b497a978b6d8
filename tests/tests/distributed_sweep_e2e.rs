//! End-to-end: one port swept across many of the target's addresses by six sources, each far
//! below every threshold (real nmap, ten hosts each), raises one per-port `distributed_scan`
//! naming the port with a sample of the sources; visitors of a web farm on the same addresses
//! (every address serves port 443, as a load-balanced farm behind the sensor) raise nothing.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        NMAP_FAST, NMAP_TIMEOUT, assert_no_other_alerts, connects, expect_alert_matching, nmap_lab,
        sampled_sources,
    },
    lab::Lab,
    netns::Netns,
    services::Service,
};

/// Host `h` of the lab's bridge, routed to the target's extra /24 (the swept addresses).
fn host_routed_to_sweep_net(lab: &mut Lab, role: &str, h: u8) -> Netns {
    let ns = lab.add_host(role, h).expect("adding a host");
    ns.ip(&[
        "route",
        "add",
        &lab.sweep_net(),
        "via",
        &lab.target_v4().to_string(),
    ])
    .expect("routing the sweep net through the target");
    ns
}

#[test]
fn six_nmap_sources_sweeping_port_22_of_sixty_addresses_raise_one_distributed_scan() {
    let test = "six_nmap_sources_sweeping_port_22_of_sixty_addresses_raise_one_distributed_scan";
    let Some(mut lab) = nmap_lab(test) else {
        return;
    };
    let scanner_hosts: Vec<u8> = (4..10).collect();
    let scanners: Vec<Netns> = scanner_hosts
        .iter()
        .map(|h| host_routed_to_sweep_net(&mut lab, &format!("s{h}"), *h))
        .collect();
    let visitor_hosts: Vec<u8> = (10..16).collect();
    let visitors: Vec<Netns> = visitor_hosts
        .iter()
        .map(|h| host_routed_to_sweep_net(&mut lab, &format!("v{h}"), *h))
        .collect();
    // Port 443 of every address of the target: a farm of 256 servers behind the sensor.
    let farm =
        Service::tcp(&lab.target, IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[443]).expect("the web farm");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    // Six visitors, each to port 443 of ten farm servers: sixty servers, all answering.
    for (i, v) in visitors.iter().enumerate() {
        for j in 0..10 {
            let server = lab.sweep_host((100 + i * 10 + j) as u8);
            assert!(
                connects(v.name(), SocketAddr::from((server, 443))),
                "the farm answers {server}"
            );
        }
    }
    // Six scanners, each SYN-probing port 22 of ten other addresses: sixty hosts.
    for (i, ns) in scanners.iter().enumerate() {
        let hosts: Vec<String> = (0..10)
            .map(|j| lab.sweep_host((10 + i * 10 + j) as u8).to_string())
            .collect();
        let mut args = vec!["-sS", "-p", "22", "-Pn"];
        args.extend(NMAP_FAST);
        args.extend(hosts.iter().map(String::as_str));
        ns.nmap(&args, NMAP_TIMEOUT);
    }
    let alert = expect_alert_matching(&daemon, "distributed_scan of port 22", |a| {
        a["kind"] == "distributed_scan" && a["port"] == 22
    });
    assert_eq!(
        (&alert["source"], &alert["target"], &alert["protocol"]),
        (&"*".into(), &"*".into(), &"tcp".into()),
        "{alert}"
    );
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(alert["distinct_hosts"].as_u64().unwrap() >= 32, "{alert}");
    let scanner_addrs: HashSet<String> = scanner_hosts
        .iter()
        .map(|h| lab.host_v4(*h).to_string())
        .collect();
    let sample = sampled_sources(&alert);
    assert!(sample.len() >= 4, "{alert}");
    for s in &sample {
        assert!(scanner_addrs.contains(*s), "{s} is no scanner: {alert}");
    }
    // Nothing else: no scanner crossed a threshold of its own; the farm's port 443, reached
    // on sixty hosts too, is served, so its visitors raise nothing.
    assert_no_other_alerts(&daemon, |a| {
        a["kind"] == "distributed_scan" && a["port"] == 22
    });
    drop(daemon);
    farm.stop().expect("stopping the farm");
}
