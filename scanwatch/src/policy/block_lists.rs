//! Static block lists (FireHOL / Spamhaus DROP format): parsing, with bad lines reported, and
//! reading the configured files into the entries drop mode enforces and alerts name.

use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::{net::parse_cidr, policy::enforce::Policy, text::escape};

/// A block list: its file, the name alerts give it, and whether drop mode enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSpec {
    pub path: PathBuf,
    /// `[A-Za-z0-9_.-]`, 1..=64 characters, unique among the lists.
    pub name: String,
    pub block: bool,
}

/// One bad line of a block-list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// One entry of a block-list file, with its line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub line: usize,
    pub net: IpNet,
}

/// Parses a block list: one CIDR or address per line, `#` and `;` start comments (the FireHOL
/// `.netset` and Spamhaus DROP formats). Works on bytes: each line is decoded on its own
/// (invalid UTF-8 becomes U+FFFD), so a stray byte spoils one line, not the file. Bad lines are
/// returned, not fatal.
pub fn parse_block_list(bytes: &[u8]) -> (Vec<ListEntry>, Vec<BadLine>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(raw);
        let entry = text.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_cidr(entry) {
            Ok(net) => entries.push(ListEntry { line: i + 1, net }),
            Err(reason) => bad.push(BadLine {
                line: i + 1,
                text: entry.to_owned(),
                reason,
            }),
        }
    }
    (entries, bad)
}

/// Why a set of block lists was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(
        "block lists hold {count} entries, more than the block-list map's capacity of {cap}; \
         nothing reloaded (the previous lists stay enforced): shorten or drop a list"
    )]
    TooLarge { count: usize, cap: usize },
    #[error(
        "the protected peers (addresses, routes, resolvers) cannot be read, so entries covering \
         them cannot be skipped; block lists not reloaded (the previous lists stay enforced)"
    )]
    ProtectedSetUnavailable,
}

/// Most block-list entries, all lists together: the trie's capacity.
pub const MAX_LIST_ENTRIES: usize = scanwatch_common::maps::BLOCKLIST_CAPACITY as usize;

/// Bad lines of one file logged one by one; the rest are counted in one more line.
pub const LOGGED_BAD_LINES: usize = 5;

/// Reads every block-list file: bad lines ([`bad_line_warnings`]), unreadable files and entries
/// the policy protects are logged with file and line and skipped. The result is sorted and
/// deduplicated; more than `cap` entries refuse the whole set, as does an unknown protected set.
pub fn read_block_lists(
    paths: &[PathBuf],
    policy: &Policy,
    cap: usize,
) -> Result<Vec<IpNet>, ListError> {
    if policy.peers.is_none() {
        return Err(ListError::ProtectedSetUnavailable);
    }
    let mut all = Vec::new();
    for path in paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                log::error!("block list {}: cannot read: {e}; skipped", path.display());
                continue;
            }
        };
        let (entries, bad) = parse_block_list(&bytes);
        for warning in bad_line_warnings(path, &bad) {
            log::warn!("{warning}");
        }
        let before = all.len();
        let mut protected = 0;
        for ListEntry { line, net } in entries {
            match policy.protected(&net) {
                Some(why) => {
                    protected += 1;
                    log::warn!(
                        "block list {}:{line}: {net} skipped: it covers {} ({})",
                        path.display(),
                        why.describe(),
                        why.name()
                    );
                }
                None => all.push(net),
            }
        }
        log::info!(
            "block list {}: {} entries loaded, {} bad lines, {protected} protected entries \
             skipped",
            path.display(),
            all.len() - before,
            bad.len()
        );
    }
    all.sort_unstable();
    all.dedup();
    if all.len() > cap {
        return Err(ListError::TooLarge {
            count: all.len(),
            cap,
        });
    }
    Ok(all)
}

/// Characters of a bad line's text shown in the log.
const SHOWN_CHARS: usize = 80;

/// The warnings a file's bad lines give: the first [`LOGGED_BAD_LINES`] one by one, with their
/// text escaped and cut (a list file may hold terminal escapes, carriage returns or megabytes
/// on one line), then one line counting the rest.
pub fn bad_line_warnings(path: &Path, bad: &[BadLine]) -> Vec<String> {
    let mut out: Vec<String> = bad
        .iter()
        .take(LOGGED_BAD_LINES)
        .map(|b| {
            format!(
                "block list {}:{}: `{}` skipped: {}",
                path.display(),
                b.line,
                escape(&b.text, SHOWN_CHARS),
                escape(&b.reason, 2 * SHOWN_CHARS)
            )
        })
        .collect();
    if let Some(rest) = bad.get(LOGGED_BAD_LINES..).filter(|r| !r.is_empty()) {
        out.push(format!(
            "block list {}: {} more bad lines skipped (lines {} to {}); only the first \
             {LOGGED_BAD_LINES} are logged",
            path.display(),
            rest.len(),
            rest[0].line,
            rest[rest.len() - 1].line
        ));
    }
    out
}

/// Reads a block list file's entries (for tests and the CLI).
pub fn read_block_list_file(path: &Path) -> std::io::Result<(Vec<ListEntry>, Vec<BadLine>)> {
    Ok(parse_block_list(&std::fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::enforce::tests::policy;

    #[test]
    fn block_list_formats_parse_with_bad_lines_reported() {
        let text = "# FireHOL level1\n1.2.3.0/24\n5.6.7.8\n\n; Spamhaus DROP\n\
                    10.20.0.0/16 ; SBL123456\nnot-an-ip\n2001:db8::/32 # v6\n300.1.1.1/8\n";
        let (nets, bad) = parse_block_list(text.as_bytes());
        let nets: Vec<String> = nets.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(
            nets,
            ["1.2.3.0/24", "5.6.7.8/32", "10.20.0.0/16", "2001:db8::/32"]
        );
        assert_eq!(bad.len(), 2);
        assert_eq!((bad[0].line, bad[0].text.as_str()), (7, "not-an-ip"));
        assert_eq!(bad[1].line, 9);
    }

    #[test]
    fn a_non_utf8_byte_spoils_one_line_not_the_file() {
        let bytes = b"1.2.3.0/24\n5.6.\xff7.8\n# caf\xe9 comment\n9.9.9.0/24\n";
        let (nets, bad) = parse_block_list(bytes);
        let lines: Vec<(usize, String)> =
            nets.iter().map(|e| (e.line, e.net.to_string())).collect();
        assert_eq!(
            lines,
            [(1, "1.2.3.0/24".to_owned()), (4, "9.9.9.0/24".to_owned())]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
    }

    #[test]
    fn many_bad_lines_give_a_few_escaped_warnings_and_a_count() {
        let mut body = Vec::new();
        for i in 0..10_000 {
            body.extend_from_slice(format!("\x1b[31mevil{i}\r\x1b]0;title\x07\n").as_bytes());
        }
        body.extend_from_slice(b"192.0.2.0/24\n");
        let (nets, bad) = parse_block_list(&body);
        assert_eq!((nets.len(), bad.len()), (1, 10_000));
        let warnings = bad_line_warnings(Path::new("/etc/scanwatch/evil.netset"), &bad);
        assert!(
            warnings.len() <= LOGGED_BAD_LINES + 1,
            "{} warnings",
            warnings.len()
        );
        for w in &warnings {
            assert!(
                !w.chars().any(char::is_control),
                "a control character reaches the log: {w:?}"
            );
            assert!(w.len() < 600, "{} bytes: {w}", w.len());
        }
        assert!(warnings[0].contains("evil.netset:1:"), "{}", warnings[0]);
        assert!(warnings[0].contains("\\u{1b}[31mevil0"), "{}", warnings[0]);
        let summary = warnings.last().unwrap();
        assert!(
            summary.contains(&(10_000 - LOGGED_BAD_LINES).to_string()),
            "{summary}"
        );
        assert!(bad_line_warnings(Path::new("x"), &[]).is_empty());
    }

    #[test]
    fn mapped_list_entries_are_ipv4() {
        let (nets, bad) = parse_block_list(b"::ffff:10.0.0.5\n::ffff:0:0/96\n");
        assert!(bad.is_empty());
        assert_eq!(nets[0].net.to_string(), "10.0.0.5/32");
        assert_eq!(nets[1].net.to_string(), "0.0.0.0/0");
    }

    fn list_file(name: &str, body: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scanwatch-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn lists_skip_what_covers_the_host_and_keep_the_rest() {
        let path = list_file(
            "firehol.netset",
            b"0.0.0.0/8\n10.0.0.0/8\n192.0.0.0/16\n203.0.113.53\n100.64.0.0/10\n\
              ::ffff:192.0.2.0/120\n",
        );
        let nets = read_block_lists(&[path], &policy(), MAX_LIST_ENTRIES).unwrap();
        let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
        // 192.0.0.0/16 covers the connected 192.0.2.0/24, 203.0.113.53 is the resolver, the
        // mapped /120 the own address.
        assert_eq!(nets, ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10"]);
    }

    #[test]
    fn lists_over_the_cap_or_without_a_protected_set_are_refused_whole() {
        let path = list_file("big.netset", b"1.0.0.0/24\n2.0.0.0/24\n3.0.0.0/24\n");
        let e = read_block_lists(std::slice::from_ref(&path), &policy(), 2).unwrap_err();
        assert!(matches!(e, ListError::TooLarge { count: 3, cap: 2 }), "{e}");
        assert!(e.to_string().contains('3') && e.to_string().contains('2'));
        let blind = Policy {
            peers: None,
            ..policy()
        };
        assert!(matches!(
            read_block_lists(&[path], &blind, 10),
            Err(ListError::ProtectedSetUnavailable)
        ));
    }
}
