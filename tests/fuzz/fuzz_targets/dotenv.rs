//! The `.env` parser on arbitrary text: never panics, and every error names a line that
//! exists in the (BOM-stripped, CRLF-normalised) input.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use orka_runner_controller::config::dotenv;

fuzz_target!(|text: &str| {
    let environment = BTreeMap::from([("HOME".to_owned(), "/home/orka".to_owned())]);
    let parsed = dotenv::parse(text, &environment);
    let lines = text.replace("\r\n", "\n").matches('\n').count() + 1;
    for error in &parsed.errors {
        assert!(error.line >= 1 && error.line <= lines, "line {} of {lines}", error.line);
    }
});
