//! Types shared by the scanwatch XDP program and its daemon, plus the pure logic both sides
//! (and the host-side tests) need: packet classification tables, the table of detection kinds
//! (`kinds`), the distinct-count estimator, address keys and hashing, and a host model of the
//! parser (`parse_model`) the differential test and a fuzz target hold the kernel's against.
//!
//! Everything here is `no_std` so the kernel program can use it; the `user` feature adds
//! `aya::Pod` impls and the floating-point estimate helpers.
#![no_std]
#![expect(
    clippy::inline_always,
    reason = "the kernel program calls these per packet; inlining keeps BPF-to-BPF calls and verifier work down"
)]

#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod indexed;

pub mod addr;
pub mod admission;
pub mod block;
pub mod classify;
pub mod config;
pub mod contributors;
pub mod distinct;
pub mod distributed;
pub mod event;
pub mod evidence;
pub mod fingerprints;
pub mod flow;
pub mod hash;
pub mod icmp;
pub mod kinds;
pub mod maps;
pub mod owner;
pub mod parse_model;
pub mod presence;
pub mod programs;
pub mod proto;
pub mod sample;
pub mod state;
pub mod stats;
pub mod ticks;
pub mod web;
pub mod wide;
pub mod zeroed;

#[cfg(feature = "user")]
mod pod {
    //! SAFETY: every type below is `#[repr(C)]`, `Copy`, made of integers and arrays of
    //! integers only, with explicit padding fields, so any byte pattern is a valid value.
    unsafe impl aya::Pod for crate::addr::SourceKey {}
    unsafe impl aya::Pod for crate::config::KernelConfig {}
    unsafe impl aya::Pod for crate::state::SourceState {}
    unsafe impl aya::Pod for crate::event::ScanEvent {}
    unsafe impl aya::Pod for crate::block::BlockEntry {}
    unsafe impl aya::Pod for crate::block::CachedBlock {}
    unsafe impl aya::Pod for crate::flow::FlowKey {}
    unsafe impl aya::Pod for crate::flow::FlowState {}
    unsafe impl aya::Pod for crate::evidence::Verified {}
    unsafe impl aya::Pod for crate::distributed::TargetState {}
    unsafe impl aya::Pod for crate::wide::WideState {}
    unsafe impl aya::Pod for crate::distributed::PortState {}
    unsafe impl aya::Pod for crate::web::WebSample {}
    unsafe impl aya::Pod for crate::ticks::ClockSample {}
    unsafe impl aya::Pod for crate::owner::SocketOwner {}
}
