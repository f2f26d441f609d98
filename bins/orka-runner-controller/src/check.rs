//! The `check` report: named items that pass, fail or were skipped, printed as a table.
//!
//! This module formats and summarises; the connectivity checks themselves are added by
//! the wiring (they need the concrete clients). A skipped item is not a pass.

use std::fmt;

use crate::config::{Config, GitHubAuth, GitHubScope, RunnerVersion};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It worked; the detail says what was found.
    Pass(String),
    /// It did not; the detail says why.
    Fail(String),
    /// It was not run; the detail says why.
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    /// What was checked ("configuration", "GitHub authentication", …).
    pub name: String,
    /// The result.
    pub outcome: Outcome,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The items, in the order checked.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Adds an item.
    pub fn push(&mut self, name: impl Into<String>, outcome: Outcome) {
        self.items.push(CheckItem { name: name.into(), outcome });
    }

    /// True when every item passed (a skipped item is not a pass).
    pub fn passed(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| matches!(i.outcome, Outcome::Pass(_)))
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.items.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for item in &self.items {
            let (tag, detail) = match &item.outcome {
                Outcome::Pass(d) => ("PASS", d),
                Outcome::Fail(d) => ("FAIL", d),
                Outcome::Skipped(d) => ("SKIP", d),
            };
            writeln!(f, "{tag}  {:width$}  {detail}", item.name)?;
        }
        let failed = self.items.iter().filter(|i| !matches!(i.outcome, Outcome::Pass(_))).count();
        if self.passed() {
            write!(f, "all {} checks passed", self.items.len())
        } else {
            write!(f, "{failed} of {} checks did not pass", self.items.len())
        }
    }
}

/// A redacted one-line-per-topic summary of a valid configuration.
pub fn config_summary(config: &Config) -> Vec<String> {
    let scope = match &config.github.scope {
        GitHubScope::Organization { org } => format!("organization {org}"),
        GitHubScope::Repository { owner, repo } => format!("repository {owner}/{repo}"),
        GitHubScope::Enterprise { slug } => format!("enterprise {slug}"),
    };
    let auth = match &config.github.auth {
        GitHubAuth::Pat(_) => "personal access token".to_owned(),
        GitHubAuth::App { app_id, installation_id, .. } => {
            format!("GitHub App {app_id}, installation {installation_id}")
        }
    };
    let version = match &config.github.runner_version {
        RunnerVersion::Latest => "latest release".to_owned(),
        RunnerVersion::Pinned(v) => v.clone(),
    };
    let mut lines = vec![
        format!("GitHub: {scope} at {} ({auth}); runner {version}", config.github.url),
        format!("Orka: {} as VM user {}", config.orka.url, config.orka.vm_username),
    ];
    for set in &config.scale_sets {
        lines.push(format!(
            "scale set {}: group {}, labels [{}], VM config {} in {}, {}..{} runners",
            set.name,
            set.runner_group_id,
            set.labels.join(", "),
            set.vm_config,
            set.namespace,
            set.min_runners,
            set.max_runners
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_is_not_passed() {
        let mut report = CheckReport::default();
        assert!(!report.passed(), "an empty report proves nothing");
        report.push("configuration", Outcome::Pass("1 scale set".into()));
        assert!(report.passed());
        report.push("GitHub authentication", Outcome::Skipped("not wired yet".into()));
        assert!(!report.passed());
        let text = report.to_string();
        assert!(text.contains("PASS  configuration          1 scale set"), "{text}");
        assert!(text.contains("SKIP  GitHub authentication  not wired yet"), "{text}");
        assert!(text.ends_with("1 of 2 checks did not pass"), "{text}");
    }
}
