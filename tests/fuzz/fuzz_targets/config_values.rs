//! The single-value parsers on arbitrary text: durations, URLs, listen addresses,
//! `RUNNERS` JSON and the download template. None may panic; a parsed duration must be
//! at least the bound it was checked against; a URL accepted with its credentials
//! checked must carry none.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use orka_runner_controller::config::values;

fuzz_target!(|text: &str| {
    let _ = values::parse_go_duration(text);
    if let Ok(d) = values::parse_go_duration_at_least(text, Duration::from_secs(1)) {
        assert!(d >= Duration::from_secs(1));
    }
    if let Ok(url) = values::parse_http_url(text) {
        if values::reject_userinfo(&url).is_ok() {
            assert!(url.username().is_empty() && url.password().is_none());
        }
    }
    let _ = values::parse_listen_addr(text);
    if let Ok(entries) = values::parse_runners(text) {
        assert!(!entries.is_empty());
        assert!(entries.iter().all(|e| e.runner_group_id > 0 && e.runner_group_id <= values::MAX_ID));
    }
    let _ = values::parse_download_template(text);
    let _ = values::parse_label_list(text);
    let _ = values::parse_runner_version(text);
});
