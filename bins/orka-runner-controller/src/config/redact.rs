//! Keeps secrets out of configuration errors: URL credentials (`user:password@`) and the
//! source text that TOML/YAML parsers like to quote.
//!
//! Both are applied to every problem before it leaves the configuration step, so a new
//! error path cannot forget them.

/// What replaces removed text.
pub const REDACTED: &str = "[redacted]";

/// Replaces the userinfo of every `scheme://user:password@host` in `text` by
/// [`REDACTED`]. Text without `://` is returned unchanged.
pub fn url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment or anything that ends a URL in prose.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(REDACTED);
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Shortest source fragment that is scrubbed from a parser message (shorter ones would
/// hit ordinary words).
const MIN_SCRUBBED_LEN: usize = 4;

/// A parser's error message, reduced to what is safe to print: the position line and the
/// description, without the quoted source snippet; then any source text still present
/// (values, whole lines) replaced by [`REDACTED`].
pub fn parse_error(message: &str, source: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let is_snippet = |line: &str| {
        let t = line.trim_start();
        t.starts_with('|')
            || t.split_once('|').is_some_and(|(n, _)| n.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    let kept: Vec<&str> = lines.iter().copied().filter(|l| !is_snippet(l)).collect();
    let summary = match kept.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first}: {}", last.trim()),
    };
    scrub(&url_userinfo(&summary), source)
}

/// Replaces every fragment of `source` (whole lines, values after `=` or `:`, and their
/// words) found in `text`, longest first.
pub fn scrub(text: &str, source: &str) -> String {
    let mut fragments: Vec<&str> = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        fragments.push(line);
        if let Some((_, value)) = line.split_once(['=', ':']) {
            let value = value.trim();
            fragments.push(value);
            fragments.push(value.trim_matches(['"', '\'']));
            fragments.extend(value.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',')));
        }
    }
    fragments.retain(|f| f.chars().count() >= MIN_SCRUBBED_LEN);
    fragments.sort_by_key(|f| std::cmp::Reverse(f.len()));
    fragments.dedup();
    let mut out = text.to_owned();
    for fragment in fragments {
        if out.contains(fragment) {
            out = out.replace(fragment, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_wherever_a_url_appears() {
        assert_eq!(url_userinfo("https://u:p4ss@github.com/acme"), "https://[redacted]@github.com/acme");
        assert_eq!(url_userinfo("x \"http://tok@h:8080\" y"), "x \"http://[redacted]@h:8080\" y");
        assert_eq!(
            url_userinfo("https://github.com/a@b"),
            "https://github.com/a@b",
            "@ in the path is not userinfo"
        );
        assert_eq!(url_userinfo("no url here"), "no url here");
        assert_eq!(url_userinfo("a://@ b://x:y@z"), "a://[redacted]@ b://[redacted]@z");
    }

    #[test]
    fn toml_snippets_are_dropped_and_values_scrubbed() {
        let source = "orka_url = \"http://o\"\norka_token = \"tok-s3cret\" junk\n";
        let message = "TOML parse error at line 2, column 27\n  |\n2 | orka_token = \"tok-s3cret\" junk\n  |                           ^\nexpected newline, `#`\n";
        let safe = parse_error(message, source);
        assert!(!safe.contains("tok-s3cret"), "{safe}");
        assert!(safe.contains("line 2"), "{safe}");
        assert!(safe.contains("expected newline"), "{safe}");
        // A message that quotes a value inline is scrubbed too.
        let safe = parse_error("invalid type: string \"tok-s3cret\", expected a map", source);
        assert!(!safe.contains("tok-s3cret"), "{safe}");
    }
}
