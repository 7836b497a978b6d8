//! Which scanner a source's probes look like: the kernel's header samples of the source
//! (`SourceState::samples`, read from the tracker at each of its events) are checked against the trait table (`scanwatch_common::fingerprints::TRAITS`); matches accumulate
//! per source, and each alert names the best tool.
//!
//! Confidence, in `[0, 1]`: for each tool, `1 - Π(1 - weight)` over its distinct traits the
//! source's probes matched (independent pieces of evidence, each with the trait's weight); the
//! best tool's score is then multiplied by the share of the source's distinct samples that
//! matched at least one of its traits, so probes that disagree (a browser's SYN among nmap's)
//! lower it. No match at all gives `{"name": "unknown", "confidence": 0.0, "traits": []}`.

use std::collections::HashMap;

use scanwatch_common::{
    addr::SourceKey,
    event::ScanEvent,
    fingerprints::{Header, TOOLS, TRAITS, Tool},
    sample::ProbeSample,
};
use serde::Serialize;

/// The alert's `tool` object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolMatch {
    /// A `Tool` name, or `unknown`.
    pub name: &'static str,
    pub confidence: f64,
    /// The best tool's traits that matched, in table order.
    pub traits: Vec<&'static str>,
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

    /// A source that matched no trait.
    pub fn unknown() -> Self {
        Self {
            name: "unknown",
            confidence: 0.0,
            traits: Vec::new(),
        }
    }
}

/// Distinct samples remembered per source: enough for agreement, bounded under long scans.
const MAX_SAMPLES: usize = 16;
/// Sources remembered (cleared when full, as `detect::Examples`).
const MAX_SOURCES: usize = 4096;

/// What one source's samples matched so far.
#[derive(Debug, Default)]
struct SourceTraits {
    /// Bit `i`: `TRAITS[i]` matched at least one sample.
    matched: u32,
    /// Distinct decoded samples seen.
    seen: Vec<ProbeSample>,
    /// Per tool, how many of `seen` matched at least one of its traits.
    agreeing: [u32; TOOLS],
}

impl SourceTraits {
    fn add(&mut self, sample: &ProbeSample) {
        if sample.len == 0 || self.seen.len() >= MAX_SAMPLES || self.seen.contains(sample) {
            return;
        }
        let Some(header) = Header::decode(sample.data()) else {
            return;
        };
        self.seen.push(*sample);
        let bits = header.matched();
        self.matched |= bits;
        for tool in Tool::ALL {
            if tool_bits(tool) & bits != 0 {
                self.agreeing[tool as usize] += 1;
            }
        }
    }

    fn verdict(&self) -> ToolMatch {
        verdict(self.matched, &self.agreeing, self.seen.len())
    }
}

/// The bits of `TRAITS` that belong to `tool`.
fn tool_bits(tool: Tool) -> u32 {
    TRAITS
        .iter()
        .enumerate()
        .filter(|(_, t)| t.tool == tool)
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The best tool for `matched` traits (see the module docs), given how many of `samples`
/// distinct samples agreed with each tool.
fn verdict(matched: u32, agreeing: &[u32; TOOLS], samples: usize) -> ToolMatch {
    let score = |tool: Tool| {
        let miss: f64 = TRAITS
            .iter()
            .enumerate()
            .filter(|(i, t)| t.tool == tool && matched & (1 << i) != 0)
            .map(|(_, t)| 1.0 - f64::from(t.weight) / 100.0)
            .product();
        1.0 - miss
    };
    let Some((best, best_score)) = Tool::ALL
        .into_iter()
        .map(|t| (t, score(t)))
        .filter(|(_, s)| *s > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return ToolMatch::unknown();
    };
    let agreement = if samples == 0 {
        0.0
    } else {
        f64::from(agreeing[best as usize]) / samples as f64
    };
    ToolMatch {
        name: best.name(),
        confidence: (best_score * agreement * 100.0).round() / 100.0,
        traits: TRAITS
            .iter()
            .enumerate()
            .filter(|(i, t)| t.tool == best && matched & (1 << i) != 0)
            .map(|(_, t)| t.name)
            .collect(),
    }
}

/// Per-source trait matches, fed by every event of the agent (or of a replay).
#[derive(Debug, Default)]
pub struct Attribution {
    by_source: HashMap<(SourceKey, u32), SourceTraits>,
}

impl Attribution {
    /// Adds the samples of an event's source (`SourceState::samples`, read from the tracker)
    /// to its matches and returns the source's tool.
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
mod tests {
    use super::*;

    #[test]
    fn no_match_is_unknown() {
        assert_eq!(verdict(0, &[0; TOOLS], 2), ToolMatch::unknown());
    }

    #[test]
    fn disagreeing_samples_lower_the_confidence() {
        let nmap = tool_bits(Tool::Nmap) & 1;
        assert_ne!(nmap, 0, "nmap's first trait is the table's first row");
        let all = verdict(nmap, &[2, 0, 0, 0], 2);
        let half = verdict(nmap, &[1, 0, 0, 0], 2);
        assert_eq!(all.name, "nmap");
        assert_eq!(all.traits, vec![TRAITS[0].name]);
        assert!((all.confidence - f64::from(TRAITS[0].weight) / 100.0).abs() < 1e-9);
        assert!(half.confidence < all.confidence);
    }

    #[test]
    fn more_traits_of_one_tool_raise_the_confidence() {
        let zmap = tool_bits(Tool::Zmap);
        let one = verdict(zmap & zmap.wrapping_neg(), &[1, 0, 1, 0], 1);
        let both = verdict(zmap, &[0, 0, 1, 0], 1);
        assert_eq!(both.name, "zmap");
        assert!(both.confidence > one.confidence);
        assert_eq!(both.traits.len(), 2);
    }
}
