//! Orka's VM list wire parser on arbitrary bytes. Never panics, and never returns an
//! unnamed VM.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(vms) = orka_client::parse_vm_list(bytes) {
        assert!(vms.iter().all(|vm| !vm.name.is_empty()));
    }
});
