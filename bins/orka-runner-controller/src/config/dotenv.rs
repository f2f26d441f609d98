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

/// Parses `text`; `environment` resolves `$VAR` not defined earlier in the file.
/// Returns the pairs in file order (a later duplicate wins when collected).
pub fn parse(
    text: &str,
    environment: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ParseError> {
    let text = text.replace("\r\n", "\n").replace("---\n", "\n");
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let line_of = |at: usize| chars[..at.min(chars.len())].iter().filter(|c| **c == '\n').count() + 1;
    loop {
        // Statement start: skip blanks, newlines and comment lines.
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        if pos >= chars.len() {
            break;
        }
        if chars[pos] == '#' {
            while pos < chars.len() && chars[pos] != '\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        let line = line_of(start);
        // Optional `export `.
        let rest: String = chars[pos..chars.len().min(pos + 7)].iter().collect();
        if rest.starts_with("export") && rest.chars().nth(6).is_some_and(is_blank) {
            pos += 6;
            while pos < chars.len() && is_blank(chars[pos]) {
                pos += 1;
            }
        }
        // Key up to `=` or `:`.
        let key_start = pos;
        let key_end = loop {
            let Some(&c) = chars.get(pos) else {
                return Err(ParseError { line, name: None, reason: "a line has a name but no '='" });
            };
            match c {
                '=' | ':' => break pos,
                c if is_blank(c) || c.is_alphanumeric() || c == '_' || c == '.' => pos += 1,
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
        pos = key_end + 1;
        while pos < chars.len() && is_blank(chars[pos]) {
            pos += 1;
        }
        let lookup = |name: &str, out: &[(String, String)]| -> String {
            out.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| environment.get(name).cloned())
                .unwrap_or_default()
        };
        let value = match chars.get(pos) {
            Some(&quote @ ('"' | '\'')) => {
                let mut end = pos + 1;
                while end < chars.len() && !(chars[end] == quote && chars[end - 1] != '\\') {
                    end += 1;
                }
                if end >= chars.len() {
                    return Err(ParseError {
                        line,
                        name: Some(name),
                        reason: "a quoted value is not closed",
                    });
                }
                let inner: String = chars[pos + 1..end].iter().collect();
                pos = end + 1;
                if quote == '"' { expand(&unescape(&inner), &|n| lookup(n, &out)) } else { inner }
            }
            _ => {
                let end = chars[pos..]
                    .iter()
                    .position(|c| *c == '\n' || *c == '\r')
                    .map_or(chars.len(), |i| pos + i);
                let mut value_end = end;
                // The last ` #` on the line starts a comment.
                for i in (pos + 1..end).rev() {
                    if chars[i] == '#' && is_blank(chars[i - 1]) {
                        value_end = i;
                        break;
                    }
                }
                let raw: String = chars[pos..value_end].iter().collect();
                pos = end;
                expand(raw.trim_matches(is_blank), &|n| lookup(n, &out))
            }
        };
        out.push((name, value));
    }
    Ok(out)
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
        parse(text, &BTreeMap::from([("HOME".to_owned(), "/home/orka".to_owned())]))
            .unwrap()
            .into_iter()
            .collect()
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
        let err = parse("A=1\nTOKEN='s3cret\n", &BTreeMap::new()).unwrap_err();
        assert_eq!((err.line, err.name.as_deref()), (2, Some("TOKEN")));
        let err = parse("A=1\n\nnot a statement\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(err.line, 3);
        let err = parse("BAD-NAME=1\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(err.line, 1);
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
        // Values that do not start with a quote are taken verbatim, inner quotes included.
        fn unquoted_simple_values_round_trip(name in "[A-Z][A-Z0-9_]{0,10}", value in "([A-Za-z0-9_./:,\\[\\]{}-][A-Za-z0-9_./:,\\[\\]{}\"-]{0,30})?") {
            let parsed = parse(&format!("{name}={value}\n"), &BTreeMap::new()).unwrap();
            prop_assert_eq!(parsed, vec![(name, value)]);
        }
    }
}
