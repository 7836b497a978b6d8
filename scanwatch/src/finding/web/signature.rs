//! Web-scanner signatures: a TOML list of (field, text) pairs naming a tool. The defaults
//! (`packaging/web-signatures.toml`) are built in; a file of the user's adds entries, replaces a
//! default by giving its name, or turns one off with `enabled = false`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::request::Request;

/// The built-in signatures, shipped as `/usr/share/scanwatch/web-signatures.toml` too.
pub const DEFAULT_SIGNATURES: &str = include_str!("../../../../packaging/web-signatures.toml");

/// Longest pattern accepted: the sample holds 512 bytes.
const MAX_PATTERN: usize = 256;

/// Which part of the request a signature looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    UserAgent,
    Referer,
    /// The request target, query included.
    Path,
    RequestLine,
    /// Any header line, as `name: value`.
    Header,
}

/// One entry of a signature file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    tool: Option<String>,
    field: Option<Field>,
    contains: Option<String>,
    prefix: Option<String>,
    /// Documentation only: where the tool's default comes from.
    #[expect(dead_code, reason = "documentation in the file, not used at run time")]
    reference: Option<String>,
    example: Option<String>,
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    signature: Vec<Entry>,
}

/// How a signature's text is compared (both sides lowercased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Contains(String),
    Prefix(String),
}

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Contains(p) => value.contains(p.as_str()),
            Self::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

/// One validated signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub tool: String,
    pub field: Field,
    pub pattern: Pattern,
    /// A value the tool really sends (for tests and `check-config`).
    pub example: Option<String>,
}

impl Signature {
    /// Whether the request matches.
    pub fn matches(&self, r: &Request) -> bool {
        match self.field {
            Field::UserAgent => r.header("user-agent").any(|v| self.pattern.matches(v)),
            Field::Referer => r.header("referer").any(|v| self.pattern.matches(v)),
            Field::Path => self.pattern.matches(&r.path),
            Field::RequestLine => self.pattern.matches(&r.request_line.to_ascii_lowercase()),
            Field::Header => r
                .headers
                .iter()
                .any(|(n, v)| self.pattern.matches(&format!("{n}: {v}"))),
        }
    }
}

/// Why a signature file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read web signature file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("web signature file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("web signature file {path}, signature #{index} (`{name}`): {reason}")]
    Invalid {
        path: PathBuf,
        /// 1-based position of the `[[signature]]` entry in the file.
        index: usize,
        name: String,
        reason: String,
    },
}

/// The signatures in force.
#[derive(Clone, PartialEq, Eq)]
pub struct Signatures {
    list: Vec<Signature>,
}

/// Names only: `check-config` prints the configuration, and a page of patterns would bury it.
impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|s| &s.name))
            .finish()
    }
}

impl Default for Signatures {
    fn default() -> Self {
        Self::parse(Path::new("(built-in)"), DEFAULT_SIGNATURES, Vec::new())
            .expect("the built-in signatures are valid (tested)")
    }
}

impl Signatures {
    /// The built-in signatures, extended by the file at `user` when given.
    pub fn load(user: Option<&Path>) -> Result<Self, SignatureError> {
        let defaults = Self::default();
        let Some(path) = user else {
            return Ok(defaults);
        };
        let text = std::fs::read_to_string(path).map_err(|source| SignatureError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, defaults.list)
    }

    /// The built-in signatures, extended by a signature file's `text` (read from `path`, which
    /// errors name), as [`Signatures::load`] reads it.
    pub fn load_text(path: &Path, text: &str) -> Result<Self, SignatureError> {
        Self::parse(path, text, Self::default().list)
    }

    /// Parses `text` over `base`: new names are added, known names replaced, disabled ones
    /// removed.
    fn parse(path: &Path, text: &str, mut base: Vec<Signature>) -> Result<Self, SignatureError> {
        let file: File = toml::from_str(text).map_err(|e| SignatureError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut seen = std::collections::HashSet::new();
        for (i, entry) in file.signature.into_iter().enumerate() {
            let invalid = |reason: String| SignatureError::Invalid {
                path: path.to_owned(),
                index: i + 1,
                name: entry.name.clone(),
                reason,
            };
            if entry.name.trim().is_empty() {
                return Err(invalid("`name` is empty".into()));
            }
            if !seen.insert(entry.name.clone()) {
                return Err(invalid(
                    "a second signature of this name in the file".into(),
                ));
            }
            base.retain(|s| s.name != entry.name);
            if entry.enabled == Some(false) {
                continue;
            }
            let field = entry.field.ok_or_else(|| {
                invalid(
                    "`field` is missing (user_agent, referer, path, request_line or header)".into(),
                )
            })?;
            let pattern = match (&entry.contains, &entry.prefix) {
                (Some(t), None) => Pattern::Contains(t.to_ascii_lowercase()),
                (None, Some(t)) => Pattern::Prefix(t.to_ascii_lowercase()),
                _ => {
                    return Err(invalid(
                        "give exactly one of `contains` and `prefix`".into(),
                    ));
                }
            };
            let (Pattern::Contains(text) | Pattern::Prefix(text)) = &pattern;
            if text.trim().len() < 3 || text.len() > MAX_PATTERN {
                return Err(invalid(format!(
                    "the text must be 3 to {MAX_PATTERN} characters, not blank: shorter texts \
                     match ordinary requests"
                )));
            }
            let signature = Signature {
                tool: entry.tool.clone().unwrap_or_else(|| entry.name.clone()),
                name: entry.name.clone(),
                field,
                pattern,
                example: entry.example.clone(),
            };
            if let Some(example) = &entry.example
                && !signature.matches(&example_request(field, example))
            {
                return Err(invalid(format!(
                    "its own `example` ({example:?}) does not match it"
                )));
            }
            base.push(signature);
        }
        Ok(Self { list: base })
    }

    /// Every signature the request matches.
    pub fn matching<'a>(&'a self, r: &'a Request) -> impl Iterator<Item = &'a Signature> + 'a {
        self.list.iter().filter(|s| s.matches(r))
    }

    /// The signatures, in order (built-in first).
    pub fn iter(&self) -> impl Iterator<Item = &Signature> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A request carrying `value` in `field`, as a client would send it.
pub fn example_request(field: Field, value: &str) -> Request {
    let raw = match field {
        Field::UserAgent => format!("GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: {value}\r\n\r\n"),
        Field::Referer => format!("GET / HTTP/1.1\r\nHost: h\r\nReferer: {value}\r\n\r\n"),
        Field::Path => format!("GET {value} HTTP/1.1\r\nHost: h\r\n\r\n"),
        Field::RequestLine => format!("{value}\r\nHost: h\r\n\r\n"),
        Field::Header => format!("GET / HTTP/1.1\r\nHost: h\r\n{value}\r\n\r\n"),
    };
    Request::parse(raw.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua(agent: &str) -> Request {
        example_request(Field::UserAgent, agent)
    }

    #[test]
    fn every_default_signature_matches_its_tools_real_request() {
        let s = Signatures::default();
        assert!(s.len() >= 20);
        for sig in s.iter() {
            let example = sig
                .example
                .as_deref()
                .expect("every default has an example");
            let r = example_request(sig.field, example);
            let names: Vec<_> = s.matching(&r).map(|m| m.name.as_str()).collect();
            assert!(
                names.contains(&sig.name.as_str()),
                "{}: {names:?}",
                sig.name
            );
        }
    }

    #[test]
    fn the_listed_scanners_have_a_signature() {
        let s = Signatures::default();
        let tools: Vec<_> = s.iter().map(|s| s.tool.as_str()).collect();
        for tool in [
            "Nmap Scripting Engine",
            "Nikto",
            "sqlmap",
            "Nuclei",
            "ZGrab",
            "masscan",
            "WPScan",
            "gobuster",
            "DirBuster",
            "Acunetix",
            "Nessus",
            "OpenVAS",
            "ffuf",
            "feroxbuster",
            "Wfuzz",
        ] {
            assert!(tools.contains(&tool), "{tool}");
        }
    }

    #[test]
    fn browsers_and_ordinary_clients_match_nothing() {
        let s = Signatures::default();
        for agent in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Prometheus/2.53.0",
        ] {
            let m: Vec<_> = s.matching(&ua(agent)).map(|m| m.name.clone()).collect();
            assert!(m.is_empty(), "{agent}: {m:?}");
        }
        for path in [
            "/",
            "/index.html",
            "/wp-login.php",
            "/api/v1/users?q=nessus-free",
        ] {
            let r = example_request(Field::Path, path);
            assert_eq!(s.matching(&r).count(), 0, "{path}");
        }
    }

    #[test]
    fn matching_is_case_insensitive() {
        let s = Signatures::default();
        assert_eq!(s.matching(&ua("SQLMAP/1.0")).count(), 1);
        assert_eq!(s.matching(&ua("mozilla/5.0 ZGRAB/0.x")).count(), 1);
    }

    fn user(text: &str) -> Result<Signatures, SignatureError> {
        Signatures::parse(Path::new("user.toml"), text, Signatures::default().list)
    }

    #[test]
    fn a_user_file_adds_replaces_and_disables() {
        let base = Signatures::default().len();
        let s = user(
            "[[signature]]\nname = \"inhouse\"\ntool = \"ourscan\"\nfield = \"user_agent\"\nprefix = \"OurScan/\"\n\
             [[signature]]\nname = \"sqlmap-user-agent\"\nfield = \"user_agent\"\ncontains = \"sqlmap-custom\"\n\
             [[signature]]\nname = \"zmeu-user-agent\"\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(s.len(), base);
        assert_eq!(s.matching(&ua("ourscan/1")).next().unwrap().tool, "ourscan");
        assert_eq!(s.matching(&ua("sqlmap/1.8")).count(), 0, "replaced");
        assert_eq!(s.matching(&ua("x sqlmap-custom")).count(), 1);
        assert_eq!(s.matching(&ua("ZmEu")).count(), 0, "disabled");
    }

    #[test]
    fn bad_entries_are_refused_with_their_position() {
        for (text, needle) in [
            (
                "[[signature]]\nname = \"a\"\nfield = \"user_agent\"\n",
                "exactly one",
            ),
            (
                "[[signature]]\nname = \"a\"\nfield = \"user_agent\"\ncontains = \"x\"\nprefix = \"y\"\n",
                "exactly one",
            ),
            (
                "[[signature]]\nname = \"a\"\ncontains = \"abcd\"\n",
                "`field` is missing",
            ),
            (
                "[[signature]]\nname = \"a\"\nfield = \"path\"\ncontains = \"/\"\n",
                "3 to",
            ),
            (
                "[[signature]]\nname = \"a\"\nfield = \"path\"\ncontains = \"/abc\"\nexample = \"/xyz\"\n",
                "example",
            ),
            (
                "[[signature]]\nname = \"a\"\nfield = \"path\"\ncontains = \"/abc\"\n[[signature]]\nname = \"a\"\nfield = \"path\"\ncontains = \"/abd\"\n",
                "second",
            ),
        ] {
            let e = user(text).unwrap_err().to_string();
            assert!(
                e.contains(needle) && e.contains("signature #"),
                "{text}: {e}"
            );
        }
        let e = user("[[signature]]\nname = \"a\"\nfield = \"cookie\"\ncontains = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(
            user("[[signatures]]\n").is_err(),
            "unknown keys are refused"
        );
    }
}
