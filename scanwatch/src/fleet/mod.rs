//! The fleet: findings and blocks shared across hosts through CrowdSec's Local API (LAPI).
//!
//! - `publisher`: the machine role, findings → alerts (`POST /v1/alerts`), from a bounded queue.
//! - `bouncer`: the bouncer role, `ban` decisions (`GET /v1/decisions/stream`) → block trie.
//! - `lapi`: the HTTP client and the minimal JSON models; `settings`: the `[crowdsec]` section.
//!
//! Both roles run on threads of their own with blocking HTTP, retrying with backoff: a LAPI
//! that is down, slow or answering garbage never holds up detection or local enforcement. Their
//! health is exported as metrics and in the status file.
//! - `shared`: their health and metrics; `member`: starts them and applies what they bring.

pub mod bouncer;
pub mod lapi;
pub mod member;
pub mod publisher;
pub mod settings;
pub mod shared;
