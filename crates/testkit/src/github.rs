//! Fake GitHub: REST bootstrap, Actions service and message queue (spec: scaleset-protocol.md §8).
