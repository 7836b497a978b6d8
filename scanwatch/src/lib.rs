//! The scanwatch daemon as a library, so the binary stays short and the tests can reach the
//! embedded objects and the pieces they check.
//!
//! Where things happen: `loader` (load/attach/detach), `agent` (the event loop), `detect`
//! (kernel event → finding), `alerts` (JSON Lines), `metrics` (Prometheus), `config`.

pub mod agent;
pub mod alerts;
pub mod config;
pub mod detect;
pub mod loader;
pub mod metrics;
pub mod object;
