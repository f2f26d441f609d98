//! Fake Orka: the Orka 3 gateway REST API with a stateful cluster (spec: orka-api.md §11).
