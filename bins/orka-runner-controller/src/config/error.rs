//! The aggregated configuration error: every problem found, each naming its setting.
//!
//! Values of secrets never reach a [`Problem`]; builders echo only non-secret values.

use std::fmt;

/// One bad setting and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting as the operator wrote it (variable name, file key or flag).
    pub setting: String,
    /// What is wrong, as a sentence fragment ("must be true, false, 1 or 0").
    pub reason: String,
}

impl Problem {
    /// A problem with `setting`.
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { setting: setting.into(), reason: reason.into() }
    }
}

/// Every problem of one load, reported together (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// The names of the bad settings, in order (for tests and summaries).
    pub fn settings(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.setting.as_str()).collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(f, "invalid configuration ({count} problem{}):", if count == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {}: {}", problem.setting, problem.reason)?;
        }
        Ok(())
    }
}
