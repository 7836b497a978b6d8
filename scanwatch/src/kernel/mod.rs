//! The kernel side as user space sees it: the embedded objects, loading and attaching them,
//! one typed handle per map, the rings the agent drains, pinned state, and the kernel clock.

pub mod batch;
pub mod blocks;
pub mod clock;
pub mod loader;
pub mod maps;
pub mod object;
pub mod occupancy;
pub mod pins;
pub mod pressure;
pub mod rings;
pub mod take;
