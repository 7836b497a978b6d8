//! The scanwatch daemon as a library, so the binary stays short and the tests can reach the
//! embedded objects and the pieces they check.
//!
//! Where things happen: `loader` (load/attach/detach), `agent` (the event loop), `detect`
//! (kernel event → finding), `enforce` (finding → block), `reputation` (which lists name a source), `alerts` (JSON Lines, ECS, syslog),
//! `ecs` (Elastic Common Schema), `metrics` (Prometheus), `config` (and `thresholds`, per
//! kind), `pins` (pinned state), `ctl`
//! (the control CLI), `cli` (the command line and its help texts), `systemd` (service
//! notifications), `replay` (captures through the same programs), `tool` (which scanner a
//! source's probes look like).

pub mod agent;
pub mod alerts;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crowdsec;
pub mod ctl;
pub mod detect;
pub mod ecs;
pub mod enforce;
pub mod kernel;
pub mod loader;
pub mod metrics;
pub mod net;
pub mod object;
pub mod occupancy;
pub mod pins;
pub mod protect;
pub mod rate;
pub mod replay;
pub mod report;
pub mod reputation;
pub mod systemd;
pub mod thresholds;
pub mod tool;
pub mod web;
