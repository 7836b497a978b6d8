//! The sampled request, parsed leniently: the first bytes of a segment may stop in the middle
//! of a header, carry bytes that are not UTF-8, or not be HTTP at all. Parsing never fails and
//! never panics; what cannot be read is left out.

/// Headers kept per request: a scanner's request has a dozen; the rest of a 512-byte sample
/// cannot hold many more.
const MAX_HEADERS: usize = 64;

/// What the signatures look at, lowercased (signatures compare case-insensitively).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The first line, as sent (lossy UTF-8, without the line end).
    pub request_line: String,
    /// The request target (second token of the request line), lowercased.
    pub path: String,
    /// Complete header lines: lowercased name and value, trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Parses a sample. A header line cut off by the sample's end is dropped (its value may be
    /// incomplete); the request line is kept even when cut off.
    pub fn parse(sample: &[u8]) -> Self {
        let mut lines = sample.split(|b| *b == b'\n');
        let first = lines.next().unwrap_or_default();
        let request_line = String::from_utf8_lossy(trim_cr(first)).into_owned();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut headers = Vec::new();
        for line in complete(lines, sample) {
            let line = trim_cr(line);
            if line.is_empty() {
                break; // end of the header section
            }
            if headers.len() == MAX_HEADERS {
                break;
            }
            let text = String::from_utf8_lossy(line);
            if let Some((name, value)) = text.split_once(':') {
                headers.push((
                    name.trim().to_ascii_lowercase(),
                    value.trim().to_ascii_lowercase(),
                ));
            }
        }
        Self {
            request_line,
            path,
            headers,
        }
    }

    /// Values of the header `name` (lowercase).
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first complete `User-Agent` value of a sample as sent (case kept), for alerts.
    pub fn parse_raw_user_agent(sample: &[u8]) -> Option<String> {
        let mut lines = sample.split(|b| *b == b'\n');
        lines.next();
        complete(lines, sample)
            .into_iter()
            .map(trim_cr)
            .take_while(|l| !l.is_empty())
            .find_map(|line| {
                let text = String::from_utf8_lossy(line);
                let (name, value) = text.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("user-agent")
                    .then(|| value.trim().to_owned())
            })
    }

    /// The first `User-Agent`, lowercased.
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent").next()
    }
}

/// The lines of `rest` (the sample's lines after the first) that ended with `\n` inside the
/// sample: the last piece is cut off unless the sample ends with a line end.
fn complete<'a>(rest: impl Iterator<Item = &'a [u8]>, sample: &[u8]) -> Vec<&'a [u8]> {
    let mut lines: Vec<&[u8]> = rest.collect();
    if !sample.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line_and_headers_case_insensitively() {
        let r = Request::parse(
            b"GET /Admin?x=1 HTTP/1.1\r\nHost: a\r\nUSER-AGENT:  Nikto/2.5 \r\nReferer: http://b/\r\n\r\nbody",
        );
        assert_eq!(r.request_line, "GET /Admin?x=1 HTTP/1.1");
        assert_eq!(r.path, "/admin?x=1");
        assert_eq!(r.user_agent(), Some("nikto/2.5"));
        assert_eq!(r.header("referer").collect::<Vec<_>>(), ["http://b/"]);
        assert_eq!(r.headers.len(), 3, "the body is not a header");
    }

    #[test]
    fn drops_a_header_cut_off_by_the_sample_end() {
        let r = Request::parse(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: sqlm");
        assert_eq!(r.request_line, "GET / HTTP/1.1");
        assert_eq!(r.headers, [("host".to_owned(), "a".to_owned())]);
        let r = Request::parse(b"GET /only-a-request-li");
        assert_eq!(r.path, "/only-a-request-li");
        assert!(r.headers.is_empty());
    }

    #[test]
    fn tolerates_garbage() {
        for sample in [
            &b""[..],
            b"\n\n\n",
            b"\xff\xfe\x00GET",
            b"GET",
            b"GET \xff\xff HTTP/1.1\r\n\xff: \xfe\r\n:\r\nno colon\r\n",
            &[0u8; 512],
        ] {
            let r = Request::parse(sample);
            assert!(r.headers.len() <= MAX_HEADERS);
        }
        let many = "GET / HTTP/1.1\r\n".to_owned() + &"a:b\r\n".repeat(200);
        assert_eq!(Request::parse(many.as_bytes()).headers.len(), MAX_HEADERS);
    }
}
