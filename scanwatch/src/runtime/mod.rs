//! The running programs: the agent's event loop (`agent`), a capture fed through the same
//! programs (`replay`), the control CLI (`ctl`), the status file and systemd notifications.

pub mod agent;
pub mod block_lists;
pub mod ctl;
pub mod replay;
pub mod status;
pub mod systemd;
pub mod walk;
