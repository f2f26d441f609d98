//! Support for the end-to-end scenarios: start the simulated services and the real
//! controller binary as a separate process, and observe both.
