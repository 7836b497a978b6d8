//! Findings in the Elastic Common Schema (ECS 8.x), for SIEMs that map ECS natively (Elastic
//! Security, OpenSearch, Wazuh, Graylog's ECS pipelines): the standard field names
//! (`generated/ecs/ecs_flat.yml`) for what ECS has words for, and everything scanwatch
//! measures under `scanwatch.*`.

use std::net::IpAddr;

use scanwatch_common::kinds::KINDS;
use serde_json::{Map, Value, json};

use crate::finding::{
    process::Process,
    record::{Action, Direction, Finding},
};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// A MITRE ATT&CK technique as ECS's `threat.*` fields describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attack {
    pub tactic_id: &'static str,
    pub tactic_name: &'static str,
    /// The parent technique (`T1595` for `T1595.001`).
    pub technique_id: &'static str,
    pub technique_name: &'static str,
    /// The sub-technique (id, name), when the finding names one.
    pub subtechnique: Option<(&'static str, &'static str)>,
}

/// The ATT&CK tactic and technique behind a technique id of `DetectionKind::technique`, from
/// the table of kinds (`kinds::KINDS`); `None` for an id no kind has.
pub fn attack(technique: &str) -> Option<Attack> {
    let t = KINDS
        .iter()
        .map(|spec| spec.technique)
        .find(|t| t.id == technique)?;
    let parent = t.parent.unwrap_or(t);
    Some(Attack {
        tactic_id: t.tactic.id,
        tactic_name: t.tactic.name,
        technique_id: parent.id,
        technique_name: parent.name,
        subtechnique: t.parent.map(|_| (t.id, t.name)),
    })
}

/// The ATT&CK page of a tactic or (sub-)technique id (`T1595.001` → `.../T1595/001/`).
fn reference(id: &str) -> String {
    let kind = if id.starts_with("TA") {
        "tactics"
    } else {
        "techniques"
    };
    format!("https://attack.mitre.org/{kind}/{}/", id.replace('.', "/"))
}

/// Splits an example target (`host:port`, `[v6]:port`, or `host`) into address and port.
fn split_target(target: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = target.parse() {
        return Some((ip, None));
    }
    let addr: std::net::SocketAddr = target.parse().ok()?;
    Some((addr.ip(), Some(addr.port())))
}

/// The finding as one ECS document.
pub fn document(f: &Finding) -> Value {
    let source_ip = f.source.parse::<IpAddr>().ok();
    let mut source = Map::new();
    source.insert("address".into(), json!(f.source));
    if let Some(ip) = source_ip {
        source.insert("ip".into(), json!(ip));
    }

    // ECS holds one destination; the newest example is the probe that crossed the threshold.
    let newest = f.examples.last().and_then(|t| split_target(t));
    let mut destination = Map::new();
    if let Some((ip, port)) = newest {
        destination.insert("address".into(), json!(ip.to_string()));
        destination.insert("ip".into(), json!(ip));
        if let Some(port) = port {
            destination.insert("port".into(), json!(port));
        }
    }
    let mut related_ips: Vec<String> = source_ip.iter().map(ToString::to_string).collect();
    for (ip, _) in f.examples.iter().filter_map(|t| split_target(t)) {
        let ip = ip.to_string();
        if !related_ips.contains(&ip) {
            related_ips.push(ip);
        }
    }

    let interface = json!({ "interface": { "name": f.interface } });
    let observer_side = match f.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let mut observer = Map::new();
    observer.insert("type".into(), json!("ids"));
    observer.insert("vendor".into(), json!("scanwatch"));
    observer.insert("product".into(), json!("scanwatch"));
    observer.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    observer.insert(observer_side.into(), interface);

    let event_type = match f.action {
        Action::Block => "denied",
        Action::Alert | Action::WouldBlock => "info",
    };
    let kind = f.kind.name();
    let mut doc = json!({
        "@timestamp": f.timestamp,
        "ecs": { "version": ECS_VERSION },
        "message": match &f.web {
            Some(web) => format!(
                "{kind} from {}: {} ({}) requested `{}`",
                f.source,
                web.tool,
                web.signatures.join(", "),
                web.request_line
            ),
            None => format!(
                "{kind} from {}: {} distinct ports, {} distinct hosts, {} probes ({})",
                f.source, f.distinct_ports, f.distinct_hosts, f.packets, f.direction.name()
            ),
        },
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": [event_type],
            "action": kind,
            "module": "scanwatch",
            "dataset": "scanwatch.alert",
            "start": f.first_seen,
            "end": f.last_seen,
        },
        "source": source,
        "destination": destination,
        "network": { "direction": f.direction.name() },
        "observer": observer,
        "rule": {
            "name": kind,
            "id": format!("scanwatch.{kind}"),
            "ruleset": "scanwatch",
            "category": "network scan",
        },
        "related": { "ip": related_ips },
        "scanwatch": scanwatch_fields(f),
    });
    if let Some(a) = attack(f.technique) {
        let mut technique = json!({
            "id": [a.technique_id],
            "name": [a.technique_name],
            "reference": [reference(a.technique_id)],
        });
        if let Some((id, name)) = a.subtechnique {
            technique["subtechnique"] = json!({
                "id": [id],
                "name": [name],
                "reference": [reference(id)],
            });
        }
        doc["threat"] = json!({
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": [a.tactic_id],
                "name": [a.tactic_name],
                "reference": [reference(a.tactic_id)],
            },
            "technique": technique,
        });
        // ECS threat.software: the tool the source's probes look like, when one matched.
        if let Some(tool) = f.tool.as_ref().filter(|t| t.name != "unknown") {
            doc["threat"]["software"] = json!({"name": tool.name, "type": "Tool"});
        }
    }
    if let Some(Some(p)) = &f.process {
        process_fields(&mut doc, p);
    }
    doc
}

/// ECS `process.*`, `process.parent.*`, `user.*`, `container.*` and, under Kubernetes,
/// `orchestrator.*` of an egress finding's process; its cgroup and unit, which ECS has no
/// field for, stay under `scanwatch.process`.
fn process_fields(doc: &mut Value, p: &Process) {
    // The alert's own fields (only those known), moved to where ECS keeps them.
    let Ok(Value::Object(mut process)) = serde_json::to_value(p) else {
        return;
    };
    let mut rest = Map::new();
    for key in ["cgroup", "unit"] {
        if let Some(v) = process.remove(key) {
            rest.insert(key.into(), v);
        }
    }
    if let Some(mut user) = process.remove("user") {
        // ECS keeps user.id as a keyword.
        user["id"] = json!(user["id"].to_string());
        doc["user"] = user;
    }
    if let Some(Value::Object(mut container)) = process.remove("container") {
        if let Some(pod) = container.remove("pod") {
            doc["orchestrator"] = json!({
                "type": "kubernetes",
                "resource": {"type": "pod", "id": pod},
            });
        }
        doc["container"] = Value::Object(container);
    }
    if !process.is_empty() {
        doc["process"] = Value::Object(process);
    }
    doc["scanwatch"]["process"] = Value::Object(rest);
}

/// What scanwatch measured, under `scanwatch.*`: the JSON Lines alert without the fields ECS
/// already carries (`timestamp`, `source`, `interface`, `first_seen`, `last_seen`).
fn scanwatch_fields(f: &Finding) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for ecs_key in [
            "timestamp",
            "source",
            "interface",
            "first_seen",
            "last_seen",
        ] {
            m.remove(ecs_key);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scanwatch_common::event::DetectionKind;

    use super::*;
    use crate::finding::{tool::ToolMatch, verdict::Refusal};

    fn finding(kind: DetectionKind, direction: Direction, source: &str) -> Finding {
        Finding {
            timestamp: "2026-11-30T10:00:00.000Z".into(),
            kind,
            technique: kind.technique(),
            direction,
            probes: BTreeMap::from([("tcp_syn", 21)]),
            examples: vec!["192.0.2.1:22".into(), "[2001:db8::1]:443".into()],
            first_seen: "2026-11-30T09:59:59.000Z".into(),
            last_seen: "2026-11-30T10:00:00.000Z".into(),
            ..Finding::sample(source)
        }
    }

    /// The value at a dotted ECS path (`threat.tactic.id`), descending through objects.
    fn at<'v>(doc: &'v Value, path: &str) -> &'v Value {
        path.split('.').fold(doc, |v, key| &v[key])
    }

    /// Fields every ECS alert carries, whatever its kind and direction.
    const FIELDS: &[&str] = &[
        "@timestamp",
        "ecs.version",
        "message",
        "event.kind",
        "event.category",
        "event.type",
        "event.action",
        "event.start",
        "event.end",
        "source.address",
        "source.ip",
        "destination.ip",
        "destination.port",
        "network.direction",
        "rule.name",
        "threat.framework",
        "threat.tactic.id",
        "threat.tactic.name",
        "threat.technique.id",
        "threat.technique.name",
        "threat.technique.reference",
        "scanwatch.kind",
        "scanwatch.technique",
        "scanwatch.distinct_ports",
        "scanwatch.distinct_hosts",
        "scanwatch.packets",
        "scanwatch.probes",
        "scanwatch.examples",
        "scanwatch.window_seconds",
        "scanwatch.action",
    ];

    #[test]
    fn web_scan_documents_name_the_request() {
        use crate::finding::web::{self, signature::Signatures};
        let s = web::test_sample(
            b"GET /nice HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)\r\n\r\n",
        );
        let detail = web::inspect(s.payload(), &Signatures::default()).unwrap();
        let f = web::finding(
            &s,
            detail,
            "eth0".into(),
            std::time::Duration::from_secs(300),
            64,
        );
        let doc = document(&f);
        assert_eq!(
            doc["message"],
            "web_scan from 192.0.2.7: Nmap Scripting Engine (nmap-nse-user-agent) requested \
             `GET /nice HTTP/1.1`"
        );
        assert_eq!(doc["destination"]["port"], 80);
        assert_eq!(
            doc["threat"]["technique"]["subtechnique"]["id"][0],
            "T1595.002"
        );
        assert_eq!(doc["scanwatch"]["web"]["tool"], "Nmap Scripting Engine");
    }

    #[test]
    fn every_kind_and_direction_has_every_ecs_field() {
        for kind in DetectionKind::ALL {
            for direction in [Direction::Ingress, Direction::Egress] {
                let doc = document(&finding(kind, direction, "198.51.100.7"));
                let what = format!("{} {}", kind.name(), direction.name());
                for field in FIELDS {
                    assert!(
                        !at(&doc, field).is_null(),
                        "{what}: {field} missing in {doc}"
                    );
                }
                assert_eq!(doc["event"]["kind"], "alert", "{what}");
                assert_eq!(
                    doc["event"]["category"],
                    json!(["network", "intrusion_detection"]),
                    "{what}"
                );
                assert_eq!(doc["event"]["action"], kind.name(), "{what}");
                assert_eq!(doc["rule"]["name"], kind.name(), "{what}");
                assert_eq!(doc["network"]["direction"], direction.name(), "{what}");
                assert_eq!(doc["source"]["ip"], "198.51.100.7", "{what}");
                assert_eq!(
                    at(
                        &doc,
                        &format!("observer.{}.interface.name", direction.name())
                    ),
                    "eth0",
                    "{what}"
                );
                assert_eq!(doc["threat"]["framework"], "MITRE ATT&CK", "{what}");
                // The newest example is the destination.
                assert_eq!(doc["destination"]["ip"], "2001:db8::1", "{what}");
                assert_eq!(doc["destination"]["port"], 443, "{what}");
                assert_eq!(
                    doc["related"]["ip"],
                    json!(["198.51.100.7", "192.0.2.1", "2001:db8::1"]),
                    "{what}"
                );
                for moved in ["timestamp", "source", "interface"] {
                    assert!(doc["scanwatch"].get(moved).is_none(), "{what}: {moved}");
                }
            }
        }
    }

    #[test]
    fn tactics_follow_the_technique() {
        for kind in DetectionKind::ALL {
            let doc = document(&finding(kind, Direction::Ingress, "192.0.2.9"));
            let technique = kind.technique();
            let (tactic, name, parent) = if technique.starts_with("T1595") {
                ("TA0043", "Reconnaissance", "T1595")
            } else {
                assert_eq!(technique, "T1046", "{}: a new technique", kind.name());
                ("TA0007", "Discovery", "T1046")
            };
            let threat = &doc["threat"];
            assert_eq!(threat["tactic"]["id"], json!([tactic]), "{}", kind.name());
            assert_eq!(threat["tactic"]["name"], json!([name]), "{}", kind.name());
            assert_eq!(
                threat["technique"]["id"],
                json!([parent]),
                "{}",
                kind.name()
            );
            let sub = &threat["technique"]["subtechnique"];
            if technique.contains('.') {
                assert_eq!(sub["id"], json!([technique]), "{}", kind.name());
                assert_eq!(
                    sub["reference"],
                    json!([format!(
                        "https://attack.mitre.org/techniques/{}/",
                        technique.replace('.', "/")
                    )])
                );
            } else {
                assert!(sub.is_null(), "{}", kind.name());
            }
        }
        assert_eq!(
            reference("TA0043"),
            "https://attack.mitre.org/tactics/TA0043/"
        );
        assert!(attack("T9999").is_none());
    }

    #[test]
    fn prefixes_have_an_address_but_no_ip_and_blocks_are_denied() {
        let mut f = finding(
            DetectionKind::HostSweep,
            Direction::Ingress,
            "2001:db8:bad::/64",
        );
        f.examples = vec!["192.0.2.5".into()];
        f.action = Action::Block;
        f.block_ttl_seconds = Some(3600);
        let doc = document(&f);
        assert_eq!(doc["source"]["address"], "2001:db8:bad::/64");
        assert!(doc["source"].get("ip").is_none(), "{doc}");
        assert_eq!(doc["destination"]["ip"], "192.0.2.5");
        assert!(doc["destination"].get("port").is_none(), "{doc}");
        assert_eq!(doc["event"]["type"], json!(["denied"]));
        assert_eq!(doc["scanwatch"]["block_ttl_seconds"], 3600);

        f.action = Action::Alert;
        f.block_ttl_seconds = None;
        f.not_blocked = Some(Refusal::Gateway);
        let doc = document(&f);
        assert_eq!(doc["event"]["type"], json!(["info"]));
        assert_eq!(doc["scanwatch"]["not_blocked"], "gateway");
    }

    #[test]
    fn listed_sources_name_their_lists_under_scanwatch() {
        let mut f = finding(DetectionKind::PortScan, Direction::Ingress, "192.0.2.7");
        assert!(document(&f)["scanwatch"].get("listed_in").is_none());
        f.listed_in = vec!["spamhaus_drop".into(), "firehol_level1".into()];
        let doc = document(&f);
        assert_eq!(
            doc["scanwatch"]["listed_in"],
            json!(["spamhaus_drop", "firehol_level1"])
        );
    }

    #[test]
    fn a_named_tool_is_threat_software_and_unknown_is_not() {
        let mut f = finding(DetectionKind::PortScan, Direction::Ingress, "192.0.2.7");
        f.tool = Some(ToolMatch {
            candidates: vec!["hping3", "nmap"],
            ..ToolMatch::unknown()
        });
        let doc = document(&f);
        assert!(doc["threat"].get("software").is_none());
        assert_eq!(doc["scanwatch"]["tool"]["name"], "unknown");
        assert_eq!(
            doc["scanwatch"]["tool"]["candidates"],
            json!(["hping3", "nmap"])
        );
        f.tool = Some(ToolMatch {
            name: "zmap",
            confidence: 1.0,
            traits: vec!["zmap_ip_id_54321"],
            candidates: vec!["zmap"],
        });
        let doc = document(&f);
        assert_eq!(doc["threat"]["software"]["name"], "zmap");
        assert_eq!(doc["threat"]["software"]["type"], "Tool");
        assert_eq!(
            doc["scanwatch"]["tool"]["traits"],
            json!(["zmap_ip_id_54321"])
        );
    }

    #[test]
    fn an_egress_process_fills_the_ecs_process_user_and_container_fields() {
        use crate::finding::process::{Container, Parent, User};
        let mut f = finding(DetectionKind::PortScan, Direction::Egress, "192.0.2.5");
        let id = "ab".repeat(32);
        f.process = Some(Some(Process {
            pid: Some(4242),
            name: Some("nmap".into()),
            executable: Some("/usr/bin/nmap".into()),
            command_line: Some("nmap -sS 192.0.2.0/24".into()),
            parent: Some(Parent {
                pid: 4000,
                name: Some("bash".into()),
            }),
            user: Some(User {
                id: 1000,
                name: Some("alice".into()),
            }),
            cgroup: Some(format!(
                "/kubepods/besteffort/pod0d3b6a3e-2b6f-4a55-9e0e-1a2b3c4d5e6f/{id}"
            )),
            unit: None,
            container: Some(Container {
                id: id.clone(),
                runtime: None,
                pod: Some("0d3b6a3e-2b6f-4a55-9e0e-1a2b3c4d5e6f".into()),
            }),
        }));
        let doc = document(&f);
        assert_eq!(at(&doc, "process.pid"), &json!(4242));
        assert_eq!(at(&doc, "process.name"), &json!("nmap"));
        assert_eq!(at(&doc, "process.executable"), &json!("/usr/bin/nmap"));
        assert_eq!(
            at(&doc, "process.command_line"),
            &json!("nmap -sS 192.0.2.0/24")
        );
        assert_eq!(at(&doc, "process.parent.pid"), &json!(4000));
        assert_eq!(at(&doc, "process.parent.name"), &json!("bash"));
        assert_eq!(at(&doc, "user.id"), &json!("1000"));
        assert_eq!(at(&doc, "user.name"), &json!("alice"));
        assert_eq!(at(&doc, "container.id"), &json!(id));
        assert_eq!(at(&doc, "orchestrator.resource.type"), &json!("pod"));
        assert!(
            at(&doc, "scanwatch.process.cgroup")
                .as_str()
                .unwrap()
                .starts_with("/kubepods/")
        );
        assert_eq!(at(&doc, "scanwatch.process.pid"), &Value::Null);

        // Nothing known: no ECS process fields, and `scanwatch.process` is null as in the alert.
        f.process = Some(None);
        let doc = document(&f);
        assert_eq!(at(&doc, "process"), &Value::Null);
        assert!(
            doc["scanwatch"]
                .as_object()
                .unwrap()
                .contains_key("process")
        );
        // Ingress: no process at all.
        let doc = document(&finding(
            DetectionKind::PortScan,
            Direction::Ingress,
            "192.0.2.5",
        ));
        assert!(
            !doc["scanwatch"]
                .as_object()
                .unwrap()
                .contains_key("process")
        );
    }
}
