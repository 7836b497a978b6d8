//! Text from outside (requests, list files, LAPI answers) made safe to log or alert on.

/// `text` made safe for one line of an alert or a log: at most `max` characters, control
/// characters and non-ASCII escaped (`\xNN`, `\u{...}`), so crafted input cannot forge log
/// lines or move the terminal's cursor.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_truncates() {
        assert_eq!(escape("GET /a\x1b[2J\n", 100), "GET /a\\u{1b}[2J\\n");
        assert_eq!(escape("abcdef", 3), "abc…");
    }
}
