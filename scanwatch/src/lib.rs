//! The scanwatch daemon as a library, so the binary stays short and the tests can reach the
//! embedded objects and the pieces they check.
//!
//! The modules follow the data, each floor importing only the floors below it:
//! `kernel` (the programs, their maps and rings) → `finding` (kernel events and sampled
//! requests become findings) → `policy` (drop mode's verdict: evidence, protected peers,
//! block lists) → `outputs` (JSON Lines, ECS, syslog, Prometheus) and `fleet` (CrowdSec) →
//! `config` (the file and flags, assembling each stage's settings) → `runtime` (the agent's
//! event loop, replay, the control CLI) → `cli`, and beside it `fuzzing` (the fuzz targets'
//! entry points). `net`, `rate`, `settings` and `text` are shared vocabulary below them all.

pub mod cli;
pub mod config;
pub mod finding;
pub mod fleet;
pub mod fuzzing;
pub mod kernel;
pub mod net;
pub mod outputs;
pub mod policy;
pub mod rate;
pub mod runtime;
pub mod settings;
pub mod text;
