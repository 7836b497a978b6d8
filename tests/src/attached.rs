//! The maps of a running daemon, reached from this process through the XDP program attached to
//! the interface it watches (its map ids), for tests and benches that check what the daemon
//! reports against what the kernel holds.

use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use aya::maps::{MapData, MapInfo};

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
