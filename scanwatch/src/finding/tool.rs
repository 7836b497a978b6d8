//! Which scanner a source's probes come from: the kernel's header samples of the source
//! (`SourceState::samples`, read from the tracker at each of its events) are checked against
//! the trait table (`scanwatch_common::fingerprints`), and samples accumulate per source.
//!
//! The naming rule: each sample's candidates are the tools with a trait it meets (the tools
//! that send such a probe by default); a source's candidates are the tools every informative
//! sample allows, less those a pair of its samples rules out (`EXCLUSIONS`). A tool is named
//! only when it is the one candidate; otherwise the alert says `unknown` and lists the
//! candidates, so a probe two tools could have sent is never pinned on one of them.
//!
//! Confidence, in `[0, 1]`: how often the attribution matrix (each mode of each tool run in a
//! lab and replayed, `tests/tests/tool_matrix.rs`) named that tool right when it named it
//! ([`MATRIX`]), times the share of the source's samples that allow the tool (a browser's SYN
//! among nmap's lowers it). `unknown` has confidence 0.

use std::collections::HashMap;

use scanwatch_common::{
    addr::SourceKey,
    event::ScanEvent,
    fingerprints::{EXCLUSIONS, Header, TOOLS, TRAITS, Tool, tools_of},
    sample::ProbeSample,
};
use serde::Serialize;

/// The alert's `tool` object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolMatch {
    /// A `Tool` name, or `unknown`.
    pub name: &'static str,
    pub confidence: f64,
    /// The traits and pair rules behind the verdict, in table order: the named tool's, or
    /// every candidate's.
    pub traits: Vec<&'static str>,
    /// The tools the probes allow, by name: the named tool alone, several when they cannot be
    /// told apart, none when no probe matched a trait.
    pub candidates: Vec<&'static str>,
}

impl ToolMatch {
    /// The tool of one set of samples (a source's, read from the tracker), with nothing
    /// remembered: what [`Attribution::add`] gives for a source's first event.
    pub fn of(samples: &[ProbeSample]) -> Self {
        let mut source = SourceTraits::default();
        for sample in samples {
            source.add(sample);
        }
        source.verdict()
    }

    /// A source whose probes matched no trait.
    pub fn unknown() -> Self {
        Self {
            name: "unknown",
            confidence: 0.0,
            traits: Vec::new(),
            candidates: Vec::new(),
        }
    }
}

/// One tool's record on the attribution matrix: cells where it was named, rightly or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub right: u32,
    pub wrong: u32,
}

impl Record {
    /// Share of the names that were right (0 for a tool the matrix never named).
    pub fn precision(self) -> f64 {
        let named = self.right + self.wrong;
        if named == 0 {
            0.0
        } else {
            f64::from(self.right) / f64::from(named)
        }
    }
}

/// The recorded attribution matrix, per tool (in `Tool` order): the matrix test replays every
/// cell and fails unless it counts exactly these.
pub const MATRIX: [Record; TOOLS] = [
    // nmap
    Record {
        right: 15,
        wrong: 0,
    },
    // masscan
    Record { right: 3, wrong: 0 },
    // zmap
    Record { right: 3, wrong: 0 },
    // hping3
    Record { right: 6, wrong: 0 },
];

/// Distinct samples remembered per source: enough for agreement, bounded under long scans.
const MAX_SAMPLES: usize = 16;
/// Sources remembered (cleared when full, as `detect::Examples`).
const MAX_SOURCES: usize = 4096;

/// What one source's samples said so far.
#[derive(Debug, Default)]
struct SourceTraits {
    /// Distinct decodable samples seen.
    seen: Vec<ProbeSample>,
}

impl SourceTraits {
    fn add(&mut self, sample: &ProbeSample) {
        if sample.len == 0
            || self.seen.len() >= MAX_SAMPLES
            || self.seen.contains(sample)
            || Header::decode(sample.data()).is_none()
        {
            return;
        }
        self.seen.push(*sample);
    }

    fn verdict(&self) -> ToolMatch {
        let headers: Vec<_> = self
            .seen
            .iter()
            .filter_map(|s| Header::decode(s.data()))
            .collect();
        verdict(&headers)
    }
}

/// Bit mask of every tool.
const ALL_TOOLS: u32 = (1 << TOOLS) - 1;

/// The names of the tools in `mask`, in `Tool` order.
fn names(mask: u32) -> Vec<&'static str> {
    Tool::ALL
        .into_iter()
        .filter(|t| mask & (1 << *t as u32) != 0)
        .map(Tool::name)
        .collect()
}

/// The verdict on a source's decoded samples (see the module docs).
fn verdict(samples: &[Header<'_>]) -> ToolMatch {
    let mut every = ALL_TOOLS;
    let mut some = 0;
    let mut matched = 0u64;
    let mut allowing = [0u32; TOOLS];
    for header in samples {
        let bits = header.matched();
        let tools = tools_of(bits);
        if tools == 0 {
            continue;
        }
        every &= tools;
        some |= tools;
        matched |= bits;
        for t in Tool::ALL {
            if tools & (1 << t as u32) != 0 {
                allowing[t as usize] += 1;
            }
        }
    }
    if some == 0 {
        return ToolMatch::unknown();
    }
    let mut ruled_out = 0;
    let mut rules = Vec::new();
    for rule in EXCLUSIONS {
        let pair = samples
            .iter()
            .enumerate()
            .any(|(i, a)| samples[i + 1..].iter().any(|b| rule.rules_out(a, b)));
        if pair && some & (1 << rule.tool as u32) != 0 {
            ruled_out |= 1 << rule.tool as u32;
            rules.push(rule.name);
        }
    }
    let candidates = if every == 0 { some } else { every } & !ruled_out;
    let traits_of = |mask: u32| -> Vec<&'static str> {
        TRAITS
            .iter()
            .enumerate()
            .filter(|(i, t)| matched & (1 << i) != 0 && mask & (1 << t.tool as u32) != 0)
            .map(|(_, t)| t.name)
            .chain(rules.iter().copied())
            .collect()
    };
    // One candidate, allowed by every informative sample.
    let named = Tool::ALL
        .into_iter()
        .find(|t| every != 0 && candidates == 1 << *t as u32);
    let Some(tool) = named else {
        return ToolMatch {
            name: "unknown",
            confidence: 0.0,
            traits: traits_of(candidates),
            candidates: names(candidates),
        };
    };
    let agreement = f64::from(allowing[tool as usize]) / samples.len() as f64;
    ToolMatch {
        name: tool.name(),
        confidence: (MATRIX[tool as usize].precision() * agreement * 100.0).round() / 100.0,
        traits: traits_of(candidates),
        candidates: names(candidates),
    }
}

/// Per-source samples, fed by every event of the agent (or of a replay).
#[derive(Debug, Default)]
pub struct Attribution {
    by_source: HashMap<(SourceKey, u32), SourceTraits>,
}

impl Attribution {
    /// Adds the samples of an event's source (`SourceState::samples`, read from the tracker)
    /// to what it sent before and returns the source's tool.
    pub fn add(&mut self, event: &ScanEvent, samples: &[ProbeSample]) -> ToolMatch {
        let key = (event.source, event.direction);
        if self.by_source.len() >= MAX_SOURCES && !self.by_source.contains_key(&key) {
            self.by_source.clear();
        }
        let source = self.by_source.entry(key).or_default();
        for sample in samples {
            source.add(sample);
        }
        source.verdict()
    }
}

#[cfg(test)]
mod tests;
