//! The scanwatch daemon as a library: the embedded XDP objects and the modules the binary and
//! the tests share.

pub mod object;
