//! A `.env` parser with the Go integration's semantics (it used `joho/godotenv`), so an
//! existing file means exactly what it meant there.
//!
//! The difference that matters: an unquoted value is taken verbatim to the end of the line
//! (minus a ` # comment` and surrounding blanks), so `RUNNERS=[{"name":"mac","id":1}]`
//! keeps its quotes — shell-style parsers would strip them. Also as in godotenv: `export`
//! prefixes, `KEY: value`, single quotes (literal), double quotes (`\n`, `\r` and `\x`
//! escapes, may span lines), and `$VAR` / `${VAR}` expansion in unquoted and double-quoted
//! values from earlier lines, then the given environment (`\$` keeps a literal `$`).
//!
//! Errors name the line and the variable, never the value.

use std::collections::BTreeMap;

/// A parse error: where, and why (no value text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the statement.
    pub line: usize,
    /// The variable, when it could be read.
    pub name: Option<String>,
    /// What is wrong.
    pub reason: &'static str,
}

/// What a file yielded: the statements that parsed, and one error per statement that did
/// not. A bad statement never discards the good ones around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The pairs in file order (a later duplicate wins when collected).
    pub pairs: Vec<(String, String)>,
    /// The statements that could not be parsed, in file order.
    pub errors: Vec<ParseError>,
}

/// Parses `text`; `environment` resolves `$VAR` not defined earlier in the file.
///
/// Like godotenv, the only rewrite of the text is `\r\n` → `\n`: a quoted value spanning
/// lines comes back byte for byte. A leading UTF-8 byte-order mark (Windows editors write
/// one) is ignored. After a bad statement, parsing resumes on the next line; after a quote
/// that is never closed it stops, since the rest of the file would be read as that value.
pub fn parse(text: &str, environment: &BTreeMap<String, String>) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let mut parsed = Parsed::default();
    // Line numbers are counted incrementally: the file is walked once.
    let (mut line, mut counted_to) = (1, 0);
    let next_line =
        |from: usize| chars[from..].iter().position(|c| *c == '\n').map_or(chars.len(), |i| from + i + 1);
    loop {
        // Statement start: skip blanks, newlines and comment lines.
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        if pos >= chars.len() {
            break;
        }
        if chars[pos] == '#' {
            pos = next_line(pos);
            continue;
        }
        let start = pos;
        line += chars[counted_to..start].iter().filter(|c| **c == '\n').count();
        counted_to = start;
        match statement(&chars, &mut pos, line, &parsed.pairs, environment) {
            Ok(pair) => parsed.pairs.push(pair),
            Err(error) => {
                let unclosed = error.reason == UNCLOSED_QUOTE;
                parsed.errors.push(error);
                if unclosed {
                    break;
                }
                pos = next_line(start);
            }
        }
    }
    parsed
}

const UNCLOSED_QUOTE: &str = "a quoted value is not closed";

/// Parses the statement at `*pos` (blanks and comments already skipped), moving `*pos`
/// past it.
fn statement(
    chars: &[char],
    pos: &mut usize,
    line: usize,
    earlier: &[(String, String)],
    environment: &BTreeMap<String, String>,
) -> Result<(String, String), ParseError> {
    // Optional `export `.
    let rest: String = chars[*pos..chars.len().min(*pos + 7)].iter().collect();
    if rest.starts_with("export") && rest.chars().nth(6).is_some_and(is_blank) {
        *pos += 6;
        while *pos < chars.len() && is_blank(chars[*pos]) {
            *pos += 1;
        }
    }
    // Key up to `=` or `:`.
    let key_start = *pos;
    let key_end = loop {
        let Some(&c) = chars.get(*pos) else {
            return Err(ParseError { line, name: None, reason: "a line has a name but no '='" });
        };
        match c {
            '=' | ':' => break *pos,
            c if is_blank(c) || c.is_alphanumeric() || c == '_' || c == '.' => *pos += 1,
            _ => {
                return Err(ParseError {
                    line,
                    name: None,
                    reason: "unexpected character in a variable name",
                });
            }
        }
    };
    let name: String = chars[key_start..key_end].iter().collect::<String>().trim().to_owned();
    if name.is_empty() {
        return Err(ParseError { line, name: None, reason: "a line starts with '=' (no variable name)" });
    }
    *pos = key_end + 1;
    while *pos < chars.len() && is_blank(chars[*pos]) {
        *pos += 1;
    }
    let lookup = |name: &str| -> String {
        earlier
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| environment.get(name).cloned())
            .unwrap_or_default()
    };
    let value = match chars.get(*pos) {
        Some(&quote @ ('"' | '\'')) => {
            let mut end = *pos + 1;
            while end < chars.len() && !(chars[end] == quote && chars[end - 1] != '\\') {
                end += 1;
            }
            if end >= chars.len() {
                return Err(ParseError { line, name: Some(name), reason: UNCLOSED_QUOTE });
            }
            let inner: String = chars[*pos + 1..end].iter().collect();
            *pos = end + 1;
            if quote == '"' { expand(&unescape(&inner), &lookup) } else { inner }
        }
        _ => {
            let end =
                chars[*pos..].iter().position(|c| *c == '\n' || *c == '\r').map_or(chars.len(), |i| *pos + i);
            let mut value_end = end;
            // The last ` #` on the line starts a comment.
            for i in (*pos + 1..end).rev() {
                if chars[i] == '#' && is_blank(chars[i - 1]) {
                    value_end = i;
                    break;
                }
            }
            let raw: String = chars[*pos..value_end].iter().collect();
            *pos = end;
            expand(raw.trim_matches(is_blank), &lookup)
        }
    };
    Ok((name, value))
}

fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}')
}

/// Double-quote escapes: `\n`, `\r`; any other `\x` becomes `x`, except `\$` (kept for
/// [`expand`], which turns it into a literal `$`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('$') => out.push_str("\\$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `$NAME` and `${NAME}` (NAME of `[A-Z0-9_]`) → value; `\$` → `$`; others unchanged.
fn expand(text: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' => {
                let braced = chars.get(i + 1) == Some(&'{');
                let start = i + 1 + usize::from(braced);
                let mut end = start;
                while end < chars.len() && is_name(chars[end]) {
                    end += 1;
                }
                if end == start {
                    out.push('$');
                    i += 1;
                    continue;
                }
                let name: String = chars[start..end].iter().collect();
                out.push_str(&lookup(&name));
                i = if braced && chars.get(end) == Some(&'}') { end + 1 } else { end };
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_map(text: &str) -> BTreeMap<String, String> {
        let parsed = parse(text, &BTreeMap::from([("HOME".to_owned(), "/home/orka".to_owned())]));
        assert_eq!(parsed.errors, vec![], "{text:?}");
        parsed.pairs.into_iter().collect()
    }

    fn first_error(text: &str) -> ParseError {
        parse(text, &BTreeMap::new()).errors.into_iter().next().expect("a parse error")
    }

    #[test]
    fn unquoted_json_keeps_its_quotes() {
        let vars = parse_map("RUNNERS=[{\"name\":\"orka-mac\",\"id\":1}]\n");
        assert_eq!(vars["RUNNERS"], r#"[{"name":"orka-mac","id":1}]"#);
    }

    #[test]
    fn godotenv_forms() {
        let text = "# comment\n\
                    export A=1\n\
                    B: two\n\
                    C = spaced value   # trailing comment\n\
                    D='single $HOME \\n'\n\
                    E=\"double $HOME\\nline\"\n\
                    F=${A}-$B\n\
                    G=\"price \\$5\"\n\
                    H=\n\
                    I=url#fragment\n\
                    J=\"multi\nline\"\r\n\
                    K=last";
        let vars = parse_map(text);
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "spaced value");
        assert_eq!(vars["D"], "single $HOME \\n");
        assert_eq!(vars["E"], "double /home/orka\nline");
        assert_eq!(vars["F"], "1-two");
        assert_eq!(vars["G"], "price $5");
        assert_eq!(vars["H"], "");
        assert_eq!(vars["I"], "url#fragment");
        assert_eq!(vars["J"], "multi\nline");
        assert_eq!(vars["K"], "last");
    }

    #[test]
    fn a_pem_key_in_double_quotes_with_escaped_newlines() {
        let vars =
            parse_map("KEY=\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE KEY-----\"\n");
        assert_eq!(vars["KEY"], "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----");
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let err = first_error("A=1\nTOKEN='s3cret\n");
        assert_eq!((err.line, err.name.as_deref()), (2, Some("TOKEN")));
        let err = first_error("A=1\n\nnot a statement\n");
        assert_eq!(err.line, 3);
        let err = first_error("BAD-NAME=1\n");
        assert_eq!(err.line, 1);
    }

    /// A real multi-line PEM written between double quotes, as operators paste it.
    const MULTI_LINE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwAPswrBdMywuLd/EUhPm\nnCH9D1IU6OE/R4/P8Iny/F9ywRd+\n-----END RSA PRIVATE KEY-----\n";

    #[test]
    fn multi_line_double_quoted_values_round_trip_byte_for_byte() {
        let vars = parse_map(&format!("GITHUB_APP_PRIVATE_KEY=\"{MULTI_LINE_PEM}\"\nNEXT=1\n"));
        assert_eq!(vars["GITHUB_APP_PRIVATE_KEY"], MULTI_LINE_PEM);
        assert_eq!(vars["NEXT"], "1");
        // The same with Windows line ends: only CRLF becomes LF.
        let crlf = format!("KEY=\"{}\"\r\nNEXT=1\r\n", MULTI_LINE_PEM.replace('\n', "\r\n"));
        assert_eq!(parse_map(&crlf)["KEY"], MULTI_LINE_PEM);
    }

    #[test]
    fn values_ending_in_dashes_are_kept() {
        let vars = parse_map("A=x---\nB='y---\n'\nC=3\n");
        assert_eq!((vars["A"].as_str(), vars["B"].as_str(), vars["C"].as_str()), ("x---", "y---\n", "3"));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let vars = parse_map("\u{feff}LOG_LEVEL=debug\n");
        assert_eq!(vars["LOG_LEVEL"], "debug");
    }

    #[test]
    fn a_bad_line_does_not_discard_the_others() {
        let parsed = parse("A=1\nnot a statement\nB=2\nBAD-NAME=3\nC=4\n", &BTreeMap::new());
        let names: Vec<&str> = parsed.pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4]);
        // An unclosed quote ends parsing (the rest would be its value) but keeps what came before.
        let parsed = parse("A=1\nTOKEN=\"open\nB=2\n", &BTreeMap::new());
        assert_eq!(parsed.pairs, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(parsed.errors.len(), 1);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_files_never_panic(text in "[A-Z_=\"'#$ {}\\\\\n\r\ta-z0-9:.-]{0,80}") {
            let _ = parse(&text, &BTreeMap::new());
        }

        #[test]
        // Double-quoted values without escapes or `$` come back unchanged, newlines included.
        fn double_quoted_multi_line_values_round_trip(name in "[A-Z][A-Z0-9_]{0,10}", value in "[A-Za-z0-9 /+=\n-]{0,60}") {
            let parsed = parse(&format!("{name}=\"{value}\"\n"), &BTreeMap::new());
            prop_assert_eq!(parsed.pairs, vec![(name, value)]);
        }

        #[test]
        // Values that do not start with a quote are taken verbatim, inner quotes included.
        fn unquoted_simple_values_round_trip(name in "[A-Z][A-Z0-9_]{0,10}", value in "([A-Za-z0-9_./:,\\[\\]{}-][A-Za-z0-9_./:,\\[\\]{}\"-]{0,30})?") {
            let parsed = parse(&format!("{name}={value}\n"), &BTreeMap::new());
            prop_assert_eq!(parsed.pairs, vec![(name, value)]);
        }
    }
}
