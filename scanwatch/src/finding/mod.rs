//! Findings: what the kernel's events and the sampled web requests become before any verdict.
//! `from_event` builds a finding from a kernel event, `web` from a sampled request, `report`
//! adds what the maps know (samples, prefixes, tools); `record` is the finding itself and
//! `verdict` what drop mode decided about it; `budget` throttles the output.

pub mod budget;
pub mod from_event;
pub mod process;
pub mod record;
pub mod report;
pub mod tool;
pub mod verdict;
pub mod web;
