//! What a cgroup v2 path says about a process: the systemd unit it runs in, or the container.
//! The layouts are the ones systemd and the container runtimes write:
//! - systemd: `/system.slice/nginx.service`, `/user.slice/user-1000.slice/session-2.scope`;
//! - Docker: `/system.slice/docker-<64 hex>.scope` (systemd driver), `/docker/<64 hex>`;
//! - containerd and CRI-O under Kubernetes: `…/kubepods-besteffort-pod<uid>.slice/
//!   cri-containerd-<64 hex>.scope`, `crio-<64 hex>.scope`, `/kubepods/burstable/pod<uid>/<64 hex>`;
//! - Podman: `libpod-<64 hex>.scope`.

use serde::Serialize;

/// A container a cgroup path names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The runtime's container id (64 hex digits).
    pub id: String,
    /// `docker`, `containerd`, `cri-o` or `podman`; absent where the path does not say (a bare
    /// id under a Kubernetes pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<&'static str>,
    /// The Kubernetes pod's UID, when the path is under one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Scope-name prefixes of the container runtimes that run under systemd.
const SCOPE_PREFIXES: [(&str, &str); 4] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

/// Whether `s` is a container id: 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The container in `path`, if the path is a container's (the innermost one that is).
pub fn container(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod = parts.iter().rev().find_map(|p| pod_uid(p));
    parts.iter().enumerate().rev().find_map(|(i, part)| {
        let in_scope = part.strip_suffix(".scope").and_then(|scope| {
            SCOPE_PREFIXES.iter().find_map(|(prefix, runtime)| {
                let id = scope.strip_prefix(prefix)?;
                is_container_id(id).then(|| (id.to_owned(), Some(*runtime)))
            })
        });
        let bare = || {
            is_container_id(part).then(|| {
                let runtime = match i.checked_sub(1).map(|p| parts[p]) {
                    Some("docker") => Some("docker"),
                    _ => None,
                };
                ((*part).to_owned(), runtime)
            })
        };
        in_scope.or_else(bare).map(|(id, runtime)| Container {
            id,
            runtime,
            pod: pod.clone(),
        })
    })
}

/// The pod UID of a Kubernetes pod's cgroup name: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid with _ for ->.slice` (systemd driver).
fn pod_uid(part: &str) -> Option<String> {
    let name = part.strip_suffix(".slice").unwrap_or(part);
    let (before, uid) = name.rsplit_once("pod")?;
    if !(before.is_empty() || before.starts_with("kubepods")) || uid.len() != 36 {
        return None;
    }
    let uid = uid.replace('_', "-");
    uid.bytes()
        .all(|b| b == b'-' || b.is_ascii_hexdigit())
        .then_some(uid)
}

/// The systemd unit in `path`: its innermost `.service` or `.scope`, unless that is a
/// container's scope (named by [`container`] instead).
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "unit suffixes, not file extensions: systemd's are lowercase and case-sensitive"
)]
pub fn unit(path: &str) -> Option<String> {
    let part = path
        .split('/')
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))?;
    if container(part).is_some() {
        return None;
    }
    Some(part.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2c9c1e0b6a5d8e7f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

    #[test]
    fn services_and_scopes_are_units() {
        assert_eq!(
            unit("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit("/user.slice/user-1000.slice/session-2.scope").as_deref(),
            Some("session-2.scope")
        );
        assert_eq!(
            unit("/system.slice/scan.service/worker").as_deref(),
            Some("scan.service")
        );
        assert_eq!(unit("/"), None);
        assert_eq!(unit("/user.slice"), None);
        assert_eq!(container("/system.slice/nginx.service"), None);
    }

    #[test]
    fn runtimes_scopes_name_their_containers() {
        for (prefix, runtime) in SCOPE_PREFIXES {
            let path = format!("/system.slice/{prefix}{ID}.scope");
            let c = container(&path).expect(prefix);
            assert_eq!((c.id.as_str(), c.runtime, c.pod), (ID, Some(runtime), None));
            assert_eq!(unit(&path), None, "{path}: a container, not a unit");
        }
        let c = container(&format!("/docker/{ID}")).expect("cgroupfs docker");
        assert_eq!((c.id.as_str(), c.runtime), (ID, Some("docker")));
    }

    #[test]
    fn kubernetes_paths_name_the_pod() {
        let uid = "0d3b6a3e-2b6f-4a55-9e0e-1a2b3c4d5e6f";
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/\
             cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        );
        let c = container(&systemd).expect("systemd driver");
        assert_eq!(c.runtime, Some("containerd"));
        assert_eq!(c.pod.as_deref(), Some(uid));
        let cgroupfs = format!("/kubepods/burstable/pod{uid}/{ID}");
        let c = container(&cgroupfs).expect("cgroupfs driver");
        assert_eq!(
            (c.id.as_str(), c.runtime, c.pod.as_deref()),
            (ID, None, Some(uid))
        );
    }

    #[test]
    fn look_alikes_are_not_containers() {
        assert_eq!(container("/system.slice/docker-short.scope"), None);
        assert_eq!(
            container(&format!("/system.slice/docker-{}.scope", &ID[..63])),
            None
        );
        assert_eq!(container(&ID.to_uppercase()), None);
        assert_eq!(pod_uid("ipod"), None);
    }
}
