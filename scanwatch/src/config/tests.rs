//! Tests of the configuration: presets, overrides, bounds and the error each bad key gives.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test.toml".into(),
        message: e.to_string(),
    })?;
    Config::build(Some(&file), &Overrides::default())
}

#[test]
fn the_web_section_is_validated_with_the_configuration() {
    let build = |text: &str| {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Config::build(Some(&file), &Overrides::default()).map_err(|e| e.to_string())
    };
    let c = build("block_web_scan = true\n[web]\nports = [8081]\n").unwrap();
    assert!(c.block_web_scan);
    assert_eq!(c.kernel_config(1).web_ports, [8081, 0, 0, 0, 0, 0, 0, 0]);
    let c = build("").unwrap();
    assert!(!c.block_web_scan);
    assert_eq!(c.web.ports, scanwatch_common::web::DEFAULT_WEB_PORTS);
    let e = build("[web]\nsignatures = \"/nonexistent/web.toml\"\n").unwrap_err();
    assert!(
        e.contains("web.signatures") && e.contains("/nonexistent/web.toml"),
        "{e}"
    );
    let e = build("[web]\nports = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n").unwrap_err();
    assert!(e.contains("web.ports") && e.contains("at most 8"), "{e}");
    assert!(
        build("[web]\nport = [80]\n").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn defaults_are_medium_five_minutes_loopback() {
    let c = Config::build(None, &Overrides::default()).unwrap();
    assert_eq!(c.window, Duration::from_secs(300));
    assert_eq!(c.threshold(DetectionKind::PortScan), 20);
    assert_eq!(c.threshold(DetectionKind::HostSweep), 25);
    assert!(c.metrics_addr.ip().is_loopback());
    assert_eq!(c.metrics_addr.port(), 9977);
    assert!(c.alert_log.is_none());
}

#[test]
fn flags_override_file() {
    let file: FileConfig = toml::from_str(
        "interfaces = [\"eth1\"]\nsensitivity = \"low\"\nmetrics_addr = \"127.0.0.1:1\"",
    )
    .unwrap();
    let flags = Overrides {
        interfaces: vec!["eth2".into()],
        sensitivity: Some(Sensitivity::High),
        ..Overrides::default()
    };
    let c = Config::build(Some(&file), &flags).unwrap();
    assert_eq!(c.interfaces, vec!["eth2".to_owned()]);
    assert_eq!(c.threshold(DetectionKind::PortScan), 10);
    assert_eq!(c.metrics_addr.port(), 1);
}

#[test]
fn per_kind_threshold_overrides_preset() {
    let c = parse("sensitivity = \"high\"\n[thresholds]\nport_scan = 99\nudp_scan = 0").unwrap();
    assert_eq!(c.threshold(DetectionKind::PortScan), 99);
    assert_eq!(c.threshold(DetectionKind::UdpScan), 0);
    assert_eq!(c.threshold(DetectionKind::HostSweep), 15);
    let k = c.kernel_config(1);
    assert_eq!(k.thresholds[DetectionKind::UdpScan as usize], 0);
    let bits = k.thresholds[DetectionKind::PortScan as usize];
    assert!((90..99).contains(&bits), "{bits}");
}

#[test]
fn thresholds_above_a_counters_limit_are_refused_by_name() {
    for (text, key, kind, limit) in [
        (
            "[thresholds]\nudp_scan = 3195",
            "thresholds",
            "udp_scan",
            "3194",
        ),
        (
            "[thresholds]\nport_scan = 7098",
            "thresholds",
            "port_scan",
            "7097",
        ),
        (
            "[thresholds]\nprotocol_scan = 257",
            "thresholds",
            "protocol_scan",
            "256",
        ),
        (
            "[egress_thresholds]\nstealth_scan = 4000",
            "egress_thresholds",
            "stealth_scan",
            "3194",
        ),
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { key: k, reason }) => {
                assert_eq!(k, key, "{text}");
                assert!(reason.contains(kind) && reason.contains(limit), "{reason}");
            }
            other => panic!("{text}: expected invalid {key}, got {other:?}"),
        }
    }
    // The limits themselves are accepted.
    for text in [
        "[thresholds]\nudp_scan = 3194",
        "[thresholds]\nport_scan = 7097",
        "[thresholds]\nprotocol_scan = 256",
    ] {
        parse(text).unwrap();
    }
}

#[test]
fn ingress_only_kinds_refuse_egress_thresholds() {
    use scanwatch_common::kinds::{Directions, KINDS};
    let ingress_only = KINDS
        .iter()
        .filter(|s| s.directions == Directions::Ingress)
        .map(|s| s.kind);
    for kind in ingress_only {
        let text = format!("[egress_thresholds]\n{} = 5", kind.name());
        match parse(&text) {
            Err(ConfigError::Invalid { key, reason }) => {
                assert_eq!(key, "egress_thresholds");
                assert!(reason.contains(kind.name()), "{reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
        parse(&format!("[egress_thresholds]\n{} = 0", kind.name())).unwrap();
        parse(&format!("[thresholds]\n{} = 5", kind.name())).unwrap();
    }
}

#[test]
fn bad_values_name_their_key() {
    for (text, key) in [
        ("window = \"soon\"", "window"),
        ("window = \"0s\"", "window"),
        ("ipv6_prefix = 8", "ipv6_prefix"),
        ("ipv6_wide_prefix = 8", "ipv6_wide_prefix"),
        ("ipv6_wide_prefix = 64", "ipv6_wide_prefix"),
        (
            "ipv6_prefix = 56\nipv6_wide_prefix = 56",
            "ipv6_wide_prefix",
        ),
        ("ignore = [\"10.0.0.0/33\"]", "ignore"),
        ("metrics_addr = \"nowhere\"", "metrics_addr"),
        ("top_sources = 1000", "top_sources"),
        ("tracker_capacity = 1", "tracker_capacity"),
        ("[thresholds]\nport_scan = 100000", "thresholds"),
        ("interfaces = [\"a/b\"]", "interfaces"),
        ("block_ttl = \"forever\"", "block_ttl"),
        (
            "block_ttl = \"2h\"\nmax_block_ttl = \"1h\"",
            "max_block_ttl",
        ),
        ("never_block = [\"x\"]", "never_block"),
        ("alert_syslog = \"syslog\"", "alert_syslog"),
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: expected invalid {key}, got {other:?}"),
        }
    }
}

#[test]
fn drop_mode_sets_the_kernel_flag_unless_dry_run() {
    let c = parse("mode = \"drop\"\nblock_ttl = \"10m\"").unwrap();
    assert_eq!(c.block_ttl, Duration::from_secs(600));
    assert_eq!(c.max_block_ttl, Duration::from_secs(86400));
    assert_ne!(c.kernel_config(0).flags & FLAG_DROP, 0);
    let c = parse("mode = \"drop\"\ndry_run = true").unwrap();
    assert_eq!(c.kernel_config(0).flags & FLAG_DROP, 0);
    let c = parse("").unwrap();
    assert_eq!(c.mode, Mode::Monitor);
    assert_eq!(c.kernel_config(0).flags & FLAG_DROP, 0);
}

#[test]
fn egress_has_its_own_thresholds_and_switch() {
    let c = parse("[egress_thresholds]\nport_scan = 7").unwrap();
    assert!(c.egress);
    assert_eq!(c.egress_threshold(DetectionKind::PortScan), 7);
    assert_eq!(c.egress_threshold(DetectionKind::IcmpSweep), 25);
    assert_eq!(c.threshold(DetectionKind::PortScan), 20);
    let k = c.kernel_config(0);
    assert_eq!(k.egress_thresholds[DetectionKind::PortScan as usize], 7);
    assert_eq!(k.flow_timeout_ns, 120_000_000_000);
    assert_eq!(k.flags & FLAG_NO_EGRESS, 0);
    let c = parse("egress = false\nflow_timeout = \"30s\"").unwrap();
    assert_ne!(c.kernel_config(0).flags & FLAG_NO_EGRESS, 0);
    assert_eq!(c.flow_timeout, Duration::from_secs(30));
    assert!(matches!(
        parse("flow_timeout = \"2h\""),
        Err(ConfigError::Invalid {
            key: "flow_timeout",
            ..
        })
    ));
}

#[test]
fn wide_ipv6_level_defaults_to_48_and_can_be_turned_off() {
    let c = parse("").unwrap();
    assert_eq!((c.ipv6_wide_prefix, c.block_wide_prefix), (48, false));
    assert_eq!(c.kernel_config(1).ipv6_wide_prefix_len, 48);
    let c = parse("ipv6_wide_prefix = 0").unwrap();
    assert_eq!(c.kernel_config(1).ipv6_wide_prefix_len, 0);
    let c = parse("ipv6_prefix = 128\nipv6_wide_prefix = 56\nblock_wide_prefix = true").unwrap();
    assert_eq!((c.ipv6_wide_prefix, c.block_wide_prefix), (56, true));
}

#[test]
fn distributed_scans_have_a_threshold_and_block_only_when_asked() {
    let c = parse("").unwrap();
    assert_eq!(c.threshold(DetectionKind::DistributedScan), 40);
    assert!(!c.block_distributed);
    let c = parse("block_distributed = true\n[thresholds]\ndistributed_scan = 0").unwrap();
    assert!(c.block_distributed);
    assert_eq!(
        c.kernel_config(1).thresholds[DetectionKind::DistributedScan as usize],
        0
    );
}

#[test]
fn distributed_sweeps_have_their_own_host_threshold() {
    let c = parse("").unwrap();
    assert_eq!(c.distributed_hosts, 32);
    assert_eq!(
        c.kernel_config(1).distributed_hosts,
        bits_for_count(32, NarrowBitmap::BITS)
    );
    assert_eq!(
        parse("sensitivity = \"high\"").unwrap().distributed_hosts,
        20
    );
    let c = parse("[thresholds]\ndistributed_hosts = 0").unwrap();
    assert_eq!(c.kernel_config(1).distributed_hosts, 0);
    for (bad, key) in [
        ("[thresholds]\ndistributed_hosts = 4000", "thresholds"),
        (
            "[long_thresholds]\ndistributed_hosts = 40",
            "long_thresholds",
        ),
        (
            "[egress_thresholds]\ndistributed_hosts = 40",
            "egress_thresholds",
        ),
    ] {
        match parse(bad) {
            Err(ConfigError::Invalid { key: k, reason }) => {
                assert_eq!(k, key, "{bad}: {reason}");
                assert!(reason.contains("distributed_hosts"), "{reason}");
            }
            other => panic!("{bad} accepted: {other:?}"),
        }
    }
}

#[test]
fn long_window_has_its_own_thresholds_and_must_be_longer() {
    let c = parse("").unwrap();
    assert_eq!(c.long_window, Duration::from_secs(3600));
    assert_eq!(c.long_thresholds.get(DetectionKind::PortScan), 20);
    assert_eq!(c.long_thresholds.get(DetectionKind::DistributedScan), 0);
    let c = parse("long_window = \"20m\"\n[long_thresholds]\nport_scan = 30").unwrap();
    let k = c.kernel_config(1);
    assert_eq!(k.long_window_ns, 1200 * 1_000_000_000);
    assert!(k.long_thresholds[DetectionKind::PortScan as usize] >= 30);
    for bad in [
        "long_window = \"5m\"",
        "window = \"2h\"",
        "long_window = \"8d\"",
    ] {
        assert!(
            parse(bad).unwrap_err().to_string().contains("long_window"),
            "{bad}"
        );
    }
}

#[test]
fn unknown_keys_are_errors() {
    assert!(matches!(
        parse("windw = \"5m\""),
        Err(ConfigError::Parse { .. })
    ));
    assert!(matches!(
        parse("[thresholds]\nport_scna = 3"),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn drop_safety_keys_have_documented_defaults_and_bounds() {
    let c = parse("").unwrap();
    assert_eq!((c.max_blocks_per_second, c.block_burst), (10, 100));
    assert_eq!(c.answered_peer_window, Duration::from_secs(600));
    assert_eq!(
        c.resolv_conf,
        [
            PathBuf::from("/etc/resolv.conf"),
            PathBuf::from("/run/systemd/resolve/resolv.conf")
        ]
    );
    let c = parse(
        "resolv_conf = [\"/tmp/r.conf\"]\nmax_blocks_per_second = 2\nblock_burst = 5\n\
         answered_peer_window = \"1m\"",
    )
    .unwrap();
    assert_eq!(c.resolv_conf, [PathBuf::from("/tmp/r.conf")]);
    assert_eq!((c.max_blocks_per_second, c.block_burst), (2, 5));
    for bad in ["max_blocks_per_second = 0", "block_burst = 0"] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad.split(' ').next().unwrap()), "{e}");
    }
}

#[test]
fn block_lists_take_paths_or_tables_named_by_stem_and_blocking_by_default() {
    let c = parse(
        "block_lists = [\"/l/spamhaus_drop.txt\",\n\
         { path = \"/l/firehol_level1.netset\", block = false },\n\
         { path = \"/l/x.netset\", name = \"abuse.ch-feodo\" }]",
    )
    .unwrap();
    let got: Vec<(&str, &str, bool)> = c
        .block_lists
        .iter()
        .map(|l| (l.path.to_str().unwrap(), l.name.as_str(), l.block))
        .collect();
    assert_eq!(
        got,
        [
            ("/l/spamhaus_drop.txt", "spamhaus_drop", true),
            ("/l/firehol_level1.netset", "firehol_level1", false),
            ("/l/x.netset", "abuse.ch-feodo", true),
        ]
    );
    // Enrichment-only lists never reach the block trie.
    assert_eq!(
        c.enforced_lists(),
        [
            PathBuf::from("/l/spamhaus_drop.txt"),
            PathBuf::from("/l/x.netset")
        ]
    );
}

#[test]
fn block_list_names_must_be_unique_and_plain() {
    for text in [
        "block_lists = [\"/a/l.txt\", \"/b/l.txt\"]",
        "block_lists = [{ path = \"/a\", name = \"two words\" }]",
        "block_lists = [{ path = \"/a\", name = \"\" }]",
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "block_lists", "{text}"),
            other => panic!("{text}: expected invalid block_lists, got {other:?}"),
        }
    }
    assert!(parse("block_lists = [{ path = \"/a\", blocks = false }]").is_err());
}

#[test]
fn mapped_addresses_in_config_are_ipv4() {
    let c =
        parse("never_block = [\"::ffff:10.0.0.5\"]\nignore = [\"::ffff:10.9.0.0/112\"]").unwrap();
    assert_eq!(c.never_block[0].to_string(), "10.0.0.5/32");
    assert_eq!(c.ignore[0].to_string(), "10.9.0.0/16");
}

#[test]
fn crowdsec_section_is_validated_with_the_rest() {
    let file: FileConfig = toml::from_str(
        "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080/\"\nmachine_id = \"m\"\n\
         password_file = \"/p\"\npoll_interval = \"2s\"\n",
    )
    .unwrap();
    let c = Config::build(Some(&file), &Overrides::default()).unwrap();
    let cs = c.crowdsec.unwrap();
    assert!(cs.publish && !cs.enforce);
    assert_eq!(cs.poll_interval, Duration::from_secs(2));
    assert!(toml::from_str::<FileConfig>("[crowdsec]\nlapi_uri = \"x\"\n").is_err());
    let bad: FileConfig = toml::from_str(
        "[crowdsec]\nlapi_url = \"http://h\"\napi_key_file = \"/k\"\npoll_interval = \"0s\"\n",
    )
    .unwrap();
    assert!(Config::build(Some(&bad), &Overrides::default()).is_err());
    assert_eq!(
        Config::build(None, &Overrides::default()).unwrap().crowdsec,
        None
    );
}

#[test]
fn block_ttls_beyond_the_longest_block_are_refused() {
    for (text, key) in [
        ("block_ttl = \"600y\"", "block_ttl"),
        (
            "block_ttl = \"1h\"\nmax_block_ttl = \"600y\"",
            "max_block_ttl",
        ),
        ("max_block_ttl = \"99999999999999999999h\"", "max_block_ttl"),
    ] {
        match parse(text) {
            Err(e @ ConfigError::Invalid { key: k, .. }) => {
                assert_eq!(k, key, "{text}");
                assert!(
                    text.contains("999") || e.to_string().contains("365days"),
                    "{e}"
                );
            }
            other => panic!("{text}: expected invalid {key}, got {other:?}"),
        }
    }
    let c = parse("block_ttl = \"365days\"").unwrap();
    assert_eq!(c.max_block_ttl, Duration::from_secs(365 * 86400));
}

#[test]
fn an_answered_peer_window_beyond_the_longest_block_is_refused() {
    let e = parse("answered_peer_window = \"600y\"\n").unwrap_err();
    assert!(e.to_string().contains("answered_peer_window"), "{e}");
    assert!(parse("answered_peer_window = \"30d\"\n").is_ok());
}
