//! The demo's closing numbers, read from the controller's own Prometheus exposition (so
//! the summary shows what an operator's dashboard would).

use std::collections::BTreeMap;

use crate::metrics::{PREFIX, Stage};

/// Sum and count of one histogram series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SumCount {
    /// Sum of observations (seconds).
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl SumCount {
    /// Mean, when there is an observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// Per-stage latency (sum, count) by stage label.
pub fn stage_latencies(exposition: &str) -> BTreeMap<String, SumCount> {
    let mut stages: BTreeMap<String, SumCount> = BTreeMap::new();
    let sum = format!("{PREFIX}_stage_duration_seconds_sum{{");
    let count = format!("{PREFIX}_stage_duration_seconds_count{{");
    for line in exposition.lines() {
        let (is_sum, rest) = if let Some(rest) = line.strip_prefix(&sum) {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix(&count) {
            (false, rest)
        } else {
            continue;
        };
        let (Some(stage), Some(value)) = (label(rest, "stage"), sample_value(rest)) else { continue };
        let entry = stages.entry(stage).or_default();
        if is_sum {
            entry.sum += value;
        } else {
            entry.count += value;
        }
    }
    stages
}

/// Reconcile decisions by `(action, reason)`.
pub fn reconcile_decisions(exposition: &str) -> BTreeMap<(String, String), f64> {
    let prefix = format!("{PREFIX}_reconcile_decisions_total{{");
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| Some(((label(rest, "action")?, label(rest, "reason")?), sample_value(rest)?)))
        .fold(BTreeMap::new(), |mut acc, (key, value)| {
            *acc.entry(key).or_insert(0.0) += value;
            acc
        })
}

/// The stages in path order with their labels, for printing.
pub fn stage_order() -> impl Iterator<Item = &'static str> {
    Stage::ALL.into_iter().map(Stage::label)
}

fn label(rest: &str, name: &str) -> Option<String> {
    let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].to_owned())
}

fn sample_value(rest: &str) -> Option<f64> {
    rest.rsplit_once("} ")?.1.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stage_histograms_and_decision_counters() {
        let text = format!(
            "{PREFIX}_stage_duration_seconds_sum{{scale_set=\"mac\",stage=\"vm_deployed\"}} 3.0\n\
             {PREFIX}_stage_duration_seconds_count{{scale_set=\"mac\",stage=\"vm_deployed\"}} 2\n\
             {PREFIX}_stage_duration_seconds_bucket{{scale_set=\"mac\",stage=\"vm_deployed\",le=\"1.0\"}} 1\n\
             {PREFIX}_reconcile_decisions_total{{scale_set=\"mac\",action=\"adopt\",reason=\"runner_running\"}} 1\n"
        );
        let stages = stage_latencies(&text);
        assert_eq!(stages["vm_deployed"], SumCount { sum: 3.0, count: 2.0 });
        assert_eq!(stages["vm_deployed"].mean(), Some(1.5));
        let decisions = reconcile_decisions(&text);
        assert_eq!(decisions[&("adopt".to_owned(), "runner_running".to_owned())], 1.0);
    }
}
