//! Simulated services for tests, benchmarks and the `demo`: a fake GitHub Actions service,
//! a fake Orka cluster and fake macOS VMs, each behind its real protocol on loopback
//! sockets, with fault injection and a control API.
//!
//! This is product code: people who embed our crates use it to test their own tools.
//! It deliberately depends on none of the client crates, so the clients' contract tests
//! check two independent readings of the protocol pages (docs/protocol/) against each other.

pub mod github;
pub mod orka;
pub mod sshd;
pub mod vm;
pub mod world;
