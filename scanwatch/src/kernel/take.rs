//! Taking typed map handles out of a loaded object, and the one rule for a key that is not there.

use std::os::fd::{AsFd as _, OwnedFd};

use anyhow::{anyhow, bail};
use aya::{
    Ebpf, Pod,
    maps::{HashMap, Map, MapData, MapError},
};

/// Takes map `name` out of a loaded object.
pub(crate) fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

/// The map data of map `name` of a loaded object.
pub(crate) fn take_map_data(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<MapData> {
    match take(ebpf, name)? {
        Map::Array(m) | Map::HashMap(m) | Map::LruHashMap(m) | Map::LpmTrie(m) => Ok(m),
        _ => bail!("map {name} has an unexpected type"),
    }
}

/// Hash map `name` of a loaded object, with a second descriptor of it for batch reads
/// ([`crate::kernel::batch`]; aya's typed handle does not lend its own).
pub(crate) fn take_hash<K: Pod, V: Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> anyhow::Result<(HashMap<MapData, K, V>, OwnedFd)> {
    let map = take(ebpf, name)?;
    let fd = match &map {
        Map::HashMap(m) | Map::LruHashMap(m) => m.fd().as_fd().try_clone_to_owned()?,
        _ => bail!("map {name} is not a hash map"),
    };
    Ok((HashMap::try_from(map)?, fd))
}

/// A second handle on the same map.
pub(crate) fn dup(map: &MapData) -> anyhow::Result<MapData> {
    let fd = map.fd().as_fd().try_clone_to_owned()?;
    Ok(MapData::from_fd(fd)?)
}

/// `Ok(None)` for a key that is not there.
pub(crate) fn found<V>(result: Result<V, MapError>) -> anyhow::Result<Option<V>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
