//! The attribution matrix: each (tool, mode) capture in `tests/fixtures/tools/matrix/`
//! (`scanwatch_tests::matrix`) replayed with `scanwatch replay`; its source's alerts must name
//! the tool that made it or say `unknown`, never another tool. The matrix is printed (named
//! right / unknown / wrong per cell) and must be the one docs/detections.md publishes.
//!
//! `record_matrix` (ignored) makes the captures again with the installed builds:
//! `cargo test -p scanwatch-tests --test tool_matrix -- --ignored record_matrix`.

use std::{collections::BTreeMap, fmt::Write as _, process::Command};

use scanwatch::finding::tool::{MATRIX, Record};
use scanwatch_common::fingerprints::Tool;
use scanwatch_tests::{
    daemon::daemon_binary,
    lab::Lab,
    matrix::{CELLS, Cell, Expect, fixtures, locals, record, scene},
    process::tool_or_skip,
    require_root,
};
use serde_json::Value;

/// What the alerts of one cell's source said.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    /// Every tool name its alerts gave, `unknown` included.
    names: Vec<String>,
    /// The candidates its alerts listed.
    candidates: Vec<String>,
    /// Its alerts' kinds.
    kinds: Vec<String>,
}

/// How a cell came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Right,
    Unknown,
    Wrong,
}

impl Verdict {
    fn of(cell: &Cell, outcome: &Outcome) -> Self {
        let named: Vec<_> = outcome
            .names
            .iter()
            .filter(|n| n.as_str() != "unknown")
            .collect();
        match cell.expect {
            Expect::Os if named.is_empty() => Self::Right,
            Expect::Os => Self::Wrong,
            Expect::Tool(tool) if named.iter().any(|n| n.as_str() != tool) => Self::Wrong,
            Expect::Tool(_) if named.is_empty() => Self::Unknown,
            Expect::Tool(_) => Self::Right,
        }
    }
}

/// Replays `cell`'s capture; what its source's alerts said.
fn replay(cell: &Cell) -> Outcome {
    let mut cmd = Command::new(daemon_binary().expect("the scanwatch binary"));
    cmd.arg("replay").arg(cell.fixture()).arg("--json");
    for net in locals() {
        cmd.args(["--local", &net]);
    }
    let out = cmd.output().expect("running scanwatch replay");
    assert!(
        out.status.success(),
        "{}: scanwatch replay failed: {}",
        cell.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("replay --json prints JSON");
    let source = cell.source();
    let mut outcome = Outcome {
        names: Vec::new(),
        candidates: Vec::new(),
        kinds: Vec::new(),
    };
    for alert in report["alerts"].as_array().into_iter().flatten() {
        if alert["source"] != source.as_str() {
            continue;
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        outcome.kinds.push(text(&alert["kind"]));
        outcome.names.push(text(&alert["tool"]["name"]));
        for c in alert["tool"]["candidates"].as_array().into_iter().flatten() {
            outcome.candidates.push(text(c));
        }
    }
    for list in [
        &mut outcome.names,
        &mut outcome.candidates,
        &mut outcome.kinds,
    ] {
        list.sort();
        list.dedup();
    }
    outcome
}

impl Verdict {
    /// As the docs' matrix writes it.
    fn text(self, cell: &Cell) -> &'static str {
        match (self, cell.expect) {
            (Self::Right, Expect::Os) => "right (unknown: the OS's probes)",
            (Self::Right, _) => "named right",
            (Self::Unknown, _) => "unknown",
            (Self::Wrong, _) => "WRONG",
        }
    }
}

const BEGIN: &str = "<!-- tool-matrix:begin -->";
const END: &str = "<!-- tool-matrix:end -->";

/// The matrix as docs/detections.md publishes it, between [`BEGIN`] and [`END`].
fn markdown(rows: &[(&Cell, Outcome, Verdict)]) -> String {
    let mut out = String::from(
        "| tool | mode | IP | alerts | tool.name | tool.candidates | verdict |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut totals: BTreeMap<Verdict, usize> = BTreeMap::new();
    for (cell, o, v) in rows {
        *totals.entry(*v).or_default() += 1;
        let list = |l: &[String]| {
            if l.is_empty() {
                "–".to_owned()
            } else {
                l.join(", ")
            }
        };
        let mode = if cell.mode.starts_with('-') {
            format!("`{}`", cell.mode)
        } else {
            cell.mode.to_owned()
        };
        writeln!(
            out,
            "| {} | {mode} | {} | {} | {} | {} | {} |",
            cell.program,
            if cell.ipv6 { "IPv6" } else { "IPv4" },
            o.kinds.join(", "),
            o.names.join(", "),
            list(&o.candidates),
            v.text(cell),
        )
        .unwrap();
    }
    let count = |v| totals.get(&v).copied().unwrap_or(0);
    writeln!(
        out,
        "\n{} cells: {} named right, {} unknown, {} wrong.",
        rows.len(),
        count(Verdict::Right),
        count(Verdict::Unknown),
        count(Verdict::Wrong),
    )
    .unwrap();
    out
}

/// Per tool, the cells that named it rightly and wrongly: `tool::MATRIX`.
fn records(rows: &[(&Cell, Outcome, Verdict)]) -> Vec<Record> {
    Tool::ALL
        .iter()
        .map(|tool| {
            let mut record = Record { right: 0, wrong: 0 };
            for (cell, o, _) in rows {
                if !o.names.iter().any(|n| n == tool.name()) {
                    continue;
                }
                if cell.expect == Expect::Tool(tool.name()) {
                    record.right += 1;
                } else {
                    record.wrong += 1;
                }
            }
            record
        })
        .collect()
}

#[test]
fn the_matrix_names_no_tool_wrongly() {
    require_root();
    let rows: Vec<_> = CELLS
        .iter()
        .map(|cell| {
            let outcome = replay(cell);
            assert!(
                !outcome.kinds.is_empty(),
                "{}: the capture raised no alert for {}",
                cell.name,
                cell.source()
            );
            let verdict = Verdict::of(cell, &outcome);
            (cell, outcome, verdict)
        })
        .collect();
    let table = markdown(&rows);
    println!(
        "{table}\nrecorded (nmap, masscan, zmap, hping3): {:?}",
        records(&rows)
    );
    let wrong: Vec<_> = rows
        .iter()
        .filter(|(_, _, v)| *v == Verdict::Wrong)
        .map(|(c, o, _)| format!("{}: {o:?}", c.name))
        .collect();
    assert!(wrong.is_empty(), "wrong names: {wrong:#?}");
    assert_eq!(
        records(&rows),
        MATRIX.to_vec(),
        "scanwatch/src/finding/tool.rs MATRIX must hold the recorded counts (nmap, masscan, \
         zmap, hping3)"
    );
    let docs = std::fs::read_to_string(docs_path()).expect("reading docs/detections.md");
    let published = docs
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(block, _)| block.trim())
        .expect("docs/detections.md has the tool-matrix markers");
    assert_eq!(
        published,
        table.trim(),
        "docs/detections.md must publish the matrix as recorded (between the tool-matrix \
         markers)"
    );
}

/// docs/detections.md.
fn docs_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/detections.md")
}

/// Records every cell again (the installed nmap, masscan, zmap, hping3) into the fixtures.
#[test]
#[ignore = "records the matrix's captures; run alone, by hand, when a tool or a cell changes"]
fn record_matrix() {
    require_root();
    let only = std::env::var("MATRIX_CELLS").unwrap_or_default();
    let lab = Lab::new().expect("building the lab");
    let scene = scene(&lab).expect("the lab's addresses");
    std::fs::create_dir_all(fixtures()).expect("the fixtures directory");
    for cell in CELLS {
        if !only.is_empty() && !only.split(',').any(|n| n == cell.name) {
            continue;
        }
        if !tool_or_skip(cell.program, "record_matrix") {
            continue;
        }
        let frames = record(&lab, &scene, cell, &cell.fixture())
            .unwrap_or_else(|e| panic!("{}: {e:#}", cell.name));
        println!("{}: {frames} frames", cell.name);
    }
}
