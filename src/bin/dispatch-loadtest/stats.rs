//! The report: throughput, latency percentiles and status counts per
//! operation, human-readable and JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Args, Scenario, scenario::Outcome, verify::Verdict};

#[derive(Debug, Serialize)]
pub struct OperationStats {
    pub count: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub statuses: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub scenario: Scenario,
    pub users: usize,
    pub elapsed_seconds: f64,
    pub operations: u64,
    pub per_second: f64,
    pub by_operation: BTreeMap<String, OperationStats>,
    pub transport_errors: u64,
    /// Answers the scenario does not accept (transport errors included).
    pub unexpected_answers: u64,
    pub accepted_orders: usize,
    pub verification: Option<Verdict>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Report {
    pub fn new(args: &Args, outcome: &Outcome) -> Self {
        let elapsed = outcome.elapsed.as_secs_f64().max(0.001);
        let mut by_operation = BTreeMap::new();
        let mut operations = 0;
        for (kind, samples) in &outcome.samples {
            let mut sorted = samples.latencies_us.clone();
            sorted.sort_unstable();
            let count = sorted.len() as u64;
            operations += count;
            by_operation.insert(
                (*kind).to_owned(),
                OperationStats {
                    count,
                    per_second: count as f64 / elapsed,
                    p50_ms: percentile(&sorted, 50.0),
                    p90_ms: percentile(&sorted, 90.0),
                    p99_ms: percentile(&sorted, 99.0),
                    max_ms: sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
                    statuses: samples
                        .statuses
                        .iter()
                        .map(|(status, n)| {
                            let name = if *status == 0 {
                                "transport error".to_owned()
                            } else {
                                status.to_string()
                            };
                            (name, *n)
                        })
                        .collect(),
                },
            );
        }
        Self {
            url: args.url.clone(),
            scenario: args.scenario,
            users: args.users,
            elapsed_seconds: elapsed,
            operations,
            per_second: operations as f64 / elapsed,
            by_operation,
            transport_errors: outcome.transport_errors,
            unexpected_answers: outcome.unexpected_answers,
            accepted_orders: outcome.accepted.len(),
            verification: None,
        }
    }

    pub fn human(&self) -> String {
        let mut text = format!(
            "scenario {:?}, {} users, {:.1} s: {} operations, {:.1}/s, {} accepted orders, {} transport errors, {} unexpected answers\n",
            self.scenario,
            self.users,
            self.elapsed_seconds,
            self.operations,
            self.per_second,
            self.accepted_orders,
            self.transport_errors,
            self.unexpected_answers
        );
        text.push_str(&format!(
            "{:<20} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses\n",
            "operation", "count", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for (kind, stats) in &self.by_operation {
            let statuses: Vec<String> = stats
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}×{n}"))
                .collect();
            text.push_str(&format!(
                "{kind:<20} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}\n",
                stats.count,
                stats.per_second,
                stats.p50_ms,
                stats.p90_ms,
                stats.p99_ms,
                stats.max_ms,
                statuses.join(" ")
            ));
        }
        text
    }
}
