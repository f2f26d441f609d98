//! The get-message envelope parser (and the job messages inside it) on arbitrary bytes,
//! as a broker or a proxy in between could send them. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = github_scaleset::messages::parse_message(bytes);
    if let Ok(body) = std::str::from_utf8(bytes) {
        let _ = github_scaleset::messages::parse_job_messages(body);
    }
});
