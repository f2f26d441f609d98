//! Contract tests: the Orka client against the fake Orka of `testkit` over real loopback
//! HTTP. Two independent readings of orka-api.md checked against each other.
//!
//! - `scenarios`: the test scenarios of spec §11.6.
//! - `faults`: every fault of spec §11.4, by name.
//! - `api`: endpoints, lenient parsing, node-IP mapping, metadata, cancellation.
//! - `tls`: https with normal verification and an extra CA bundle.
//!
//! Every failing-deploy test asserts that no VM is left in the fake afterwards.

mod api;
mod common;
mod faults;
mod scenarios;
mod tls;
