//! Fake VMs: SSH endpoints that behave like a macOS VM for the runner's commands.
