//! A blocking HTTP client (`ureq`) for the daemon's `/healthz` and `/metrics`, the lab's
//! services and Prometheus' API. Requests connect from the calling thread, so from its network
//! namespace (see [`crate::netns::in_netns`]).

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};

/// `GET path` on `addr`, bounded by `timeout`; (status, body), whatever the status.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    get_query(addr, path, &[], timeout)
}

/// `GET path?query` on `addr` (the query's values percent-encoded), bounded by `timeout`;
/// (status, body), whatever the status.
pub fn get_query(
    addr: SocketAddr,
    path: &str,
    query: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // Straight to the lab's address, whatever proxy the environment names.
        .proxy(None)
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{addr}{path}"))
        .query_pairs(query.iter().copied())
        .call()
        .with_context(|| format!("GET {path} from {addr}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the response to GET {path} from {addr}"))?;
    Ok((status, body))
}
