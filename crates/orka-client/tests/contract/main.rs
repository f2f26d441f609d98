//! Contract tests: the Orka client against the fake Orka of `testkit` over real loopback
//! HTTP. Two independent readings of docs/protocol/orka.md checked against each other.
//!
//! - `scenarios`: the test scenarios of docs/protocol/orka.md#scenarios.
//! - `faults`: every fault of docs/protocol/orka.md#fault-cases, by name.
//! - `api`: endpoints, lenient parsing, node-IP mapping, metadata, cancellation.
//! - `tls`: https with normal verification and an extra CA bundle.
//!
//! Every failing-deploy test asserts that no VM is left in the fake afterwards.

mod api;
mod common;
mod faults;
mod scenarios;
mod tls;
