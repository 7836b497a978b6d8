//! Where findings and counters go: the alert log (JSON Lines or ECS, and syslog), the ECS
//! mapping, and the Prometheus endpoint.

pub mod alerts;
pub mod ecs;
pub mod metrics;
