//! End-to-end: a port scan split over six sources, each far below every threshold (real nmap,
//! ten ports each), raises one `distributed_scan` naming the target with a sample of the
//! sources, while a web server's visitors next to it raise nothing; two scans of the target
//! from one source each, beside clients of its services, raise their own `port_scan`s and no
//! `distributed_scan` naming a client.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr, UdpSocket},
    thread,
    time::Duration,
};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        NMAP_TIMEOUT, assert_no_other_alerts, connects, expect_alert, expect_alert_matching,
        nmap_lab, sampled_sources,
    },
    lab::Lab,
    netns::{Netns, in_netns},
    scanner,
    services::Service,
};
use serde_json::Value;

/// The ports of the target's TCP services in these tests.
const SERVICES: [u16; 5] = [80, 443, 5432, 8080, 8443];

/// The DNS service's port.
const DNS: u16 = 53;

/// The clients of the target's services: the lab's benign host (a web client, ports 80 and
/// 443), `multi` (a client of every TCP service) and `nat` (NAT'd clients' DNS queries, each
/// from a fresh port of one address). Every connection and query is answered.
fn use_services(lab: &Lab, multi: &Netns, nat: &Netns) {
    let target = lab.target_v4();
    for _ in 0..3 {
        for port in [80, 443] {
            assert!(connects(
                lab.benign.name(),
                SocketAddr::from((target, port))
            ));
        }
        for port in SERVICES {
            assert!(connects(multi.name(), SocketAddr::from((target, port))));
        }
    }
    let server = SocketAddr::from((target, DNS));
    let answered = in_netns(nat.name(), move || {
        (0..20u16)
            .filter(|id| {
                let socket = UdpSocket::bind(("0.0.0.0", 0)).expect("a client socket");
                socket
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("a read timeout");
                let query = scanner::dns_query_message(*id, "www.example.test");
                socket.send_to(&query, server).expect("a query");
                socket.recv(&mut [0u8; 512]).is_ok()
            })
            .count()
    })
    .expect("entering the NAT'd client's namespace");
    assert_eq!(answered, 20, "the DNS service answers");
}

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
    let multi = lab
        .add_host("c11", 11)
        .expect("adding a client of every service");
    let nat = lab.add_host("c12", 12).expect("adding the NAT'd clients");
    let target = lab.target_v4();
    let web = Service::tcp(&lab.target, IpAddr::V4(target), &SERVICES).expect("the services");
    let dns = Service::udp(&lab.target, SocketAddr::from((target, DNS))).expect("the DNS");
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
        if i == 3 {
            use_services(&lab, &multi, &nat);
        }
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
    // The sample is the last distinct sources that added a port and were not answered on
    // every port they added: the scanners, never the visitor whose first connections added
    // ports 80 and 443, both answered.
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
        assert_ne!(*s, benign, "the web client is named as a scanner: {alert}");
    }
    // The other clients, whose ports were answered, are not named either.
    for client in [lab.host_v4(11), lab.host_v4(12)] {
        assert!(
            !sample.contains(&client.to_string().as_str()),
            "the client {client} is named as a scanner: {alert}"
        );
    }
    // Nothing else: no scanner crossed a threshold of its own, the visitors none.
    assert_no_other_alerts(&daemon, |a| a["kind"] == "distributed_scan");
    drop(daemon);
    web.stop().expect("stopping the services");
    dns.stop().expect("stopping the DNS service");
}

#[test]
fn two_lone_scans_beside_clients_of_the_services_name_no_client_in_a_distributed_scan() {
    let test = "two_lone_scans_beside_clients_of_the_services_name_no_client_in_a_distributed_scan";
    let Some(mut lab) = nmap_lab(test) else {
        return;
    };
    let second = lab.add_host("s4", 4).expect("adding a second scanner");
    let multi = lab
        .add_host("c5", 5)
        .expect("adding a client of every service");
    let nat = lab.add_host("c6", 6).expect("adding the NAT'd clients");
    let target = lab.target_v4();
    let tcp = Service::tcp(&lab.target, IpAddr::V4(target), &SERVICES).expect("the services");
    let dns = Service::udp(&lab.target, SocketAddr::from((target, DNS))).expect("the DNS");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    let target_text = target.to_string();
    use_services(&lab, &multi, &nat);
    for (ns, ports) in [(&lab.attacker, "3000-3024"), (&second, "4000-4024")] {
        // 25 ports: a port_scan of its own at the default threshold of 20.
        ns.nmap(
            &[
                "-sS",
                "-p",
                ports,
                "-n",
                "-Pn",
                "-T4",
                "--max-retries",
                "0",
                &target_text,
            ],
            NMAP_TIMEOUT,
        );
        use_services(&lab, &multi, &nat);
    }
    for scanner in [lab.attacker_v4(), lab.host_v4(4)] {
        expect_alert(
            &daemon,
            &scanner.to_string(),
            &["port_scan"],
            "a lone scan of the target",
        );
    }
    thread::sleep(Duration::from_secs(1));
    let clients = [
        lab.benign_v4().to_string(),
        lab.host_v4(5).to_string(),
        lab.host_v4(6).to_string(),
    ];
    let distributed: Vec<Value> = daemon
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == "distributed_scan")
        .collect();
    for alert in &distributed {
        for s in sampled_sources(alert) {
            assert!(
                !clients.iter().any(|c| c == s),
                "the client {s} is named as a scanner: {alert}"
            );
        }
    }
    // The scanners' ports are reported with them, the clients' ports are served.
    assert!(distributed.is_empty(), "{distributed:#?}");
    drop(daemon);
    tcp.stop().expect("stopping the services");
    dns.stop().expect("stopping the DNS service");
}
