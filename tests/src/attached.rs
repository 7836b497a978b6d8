//! The maps of a running daemon, reached from this process through the XDP program attached to
//! the interface it watches (its map ids), for tests and benches that check what the daemon
//! reports against what the kernel holds.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};
use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapInfo},
};
use scanwatch_common::{
    addr::SourceKey,
    flow::{FlowKey, FlowState},
    maps,
    state::SourceState,
};

/// The id of the XDP program attached to `iface` in namespace `ns`.
pub fn xdp_program_id(ns: &str, iface: &str) -> Result<u32> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", iface])
        .output()
        .context("running ip link show")?;
    ensure!(
        out.status.success(),
        "ip link show {iface} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = links[0]["xdp"]["prog"]["id"]
        .as_u64()
        .with_context(|| format!("no XDP program on {iface}"))?;
    Ok(u32::try_from(id)?)
}

/// Map `name` of the XDP program attached to `iface` in `ns`, with its kernel description.
pub fn map(ns: &str, iface: &str, name: &str) -> Result<(MapData, MapInfo)> {
    let prog_id = xdp_program_id(ns, iface)?;
    let prog = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .context("the attached XDP program is not loaded")?;
    let ids = prog
        .map_ids()?
        .context("the kernel does not show the program's maps")?;
    for id in ids {
        let info = MapInfo::from_id(id)?;
        if info.name_as_str() == Some(name) {
            return Ok((MapData::from_id(id)?, info));
        }
    }
    anyhow::bail!("map {name} is not among the program's maps")
}

/// An LRU hash map of the daemon, typed, with what its readers need besides: a second
/// descriptor (aya's typed maps do not lend theirs, and batch reads need one) and its capacity.
pub struct LruMap<K, V> {
    /// The map, typed.
    pub map: HashMap<MapData, K, V>,
    /// Another descriptor of the same map.
    pub fd: OwnedFd,
    /// Its `max_entries`.
    pub capacity: u32,
}

/// LRU hash map `name` of the XDP program attached to `iface` in `ns`, typed.
fn lru_map<K: Pod, V: Pod>(ns: &str, iface: &str, name: &str) -> Result<LruMap<K, V>> {
    let (data, info) = map(ns, iface, name)?;
    let fd = data.fd().as_fd().try_clone_to_owned()?;
    Ok(LruMap {
        map: HashMap::try_from(Map::LruHashMap(data))?,
        fd,
        capacity: info.max_entries(),
    })
}

/// The daemon's source tracker ([`maps::TRACKER`]) on `iface` in `ns`.
pub fn tracker(ns: &str, iface: &str) -> Result<LruMap<SourceKey, SourceState>> {
    lru_map(ns, iface, maps::TRACKER)
}

/// The daemon's flow map ([`maps::FLOWS`]) on `iface` in `ns`.
pub fn flows(ns: &str, iface: &str) -> Result<LruMap<FlowKey, FlowState>> {
    lru_map(ns, iface, maps::FLOWS)
}
