//! After the run, through the API only: wait for the jobs to settle, then
//! check that every accepted order reached its expected status exactly once
//! (one timeline event per transition), that no order was lost or made
//! twice, that replayed keys answered with the same order, that the stock of
//! our items equals what their live orders took, and that no job failed.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, stream};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{Args, client::Api, scenario::Outcome, setup::Fixture};

#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub accepted_orders: usize,
    pub orders_on_server: usize,
    pub orders_by_status: BTreeMap<String, u64>,
    /// Accepted by the API but absent from the server.
    pub lost: usize,
    /// Orders on the server for a request the client saw no answer to
    /// (only possible after transport errors).
    pub unacknowledged: usize,
    /// Orders with a transition recorded more than once, or out of order.
    pub duplicated_transitions: usize,
    /// Orders that did not reach the expected status.
    pub unexpected_status: usize,
    pub replays_checked: usize,
    pub replays_mismatched: usize,
    pub webhook_duplicates_checked: usize,
    pub webhook_duplicates_mismatched: usize,
    pub stock_mismatches: Vec<String>,
    pub failed_jobs: u64,
    pub jobs_settled: bool,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn human(&self) -> String {
        let mut text = format!(
            "verification: {} accepted orders, {} on the server {:?}; lost {}, unacknowledged {}, duplicated transitions {}, unexpected status {}; replays {} checked / {} mismatched; duplicated webhooks {} checked / {} mismatched; stock mismatches {}; failed jobs {}\n",
            self.accepted_orders,
            self.orders_on_server,
            self.orders_by_status,
            self.lost,
            self.unacknowledged,
            self.duplicated_transitions,
            self.unexpected_status,
            self.replays_checked,
            self.replays_mismatched,
            self.webhook_duplicates_checked,
            self.webhook_duplicates_mismatched,
            self.stock_mismatches.len(),
            self.failed_jobs,
        );
        if self.passed() {
            text.push_str("PASSED: nothing lost, nothing done twice\n");
        } else {
            text.push_str("FAILED:\n");
            for problem in self.problems.iter().take(20) {
                text.push_str(&format!("  - {problem}\n"));
            }
        }
        text
    }
}

/// Failed jobs across every queue.
pub async fn failed_jobs(api: &Api, token: &str) -> anyhow::Result<u64> {
    let answer = api.get("/api/v1/admin/jobs/queues", Some(token)).await;
    let queues = answer.body.as_array().ok_or_else(|| {
        anyhow::anyhow!("queue stats failed with {}: {}", answer.status, answer.body)
    })?;
    Ok(queues
        .iter()
        .map(|q| q["counts"]["failed"].as_u64().unwrap_or(0))
        .sum())
}

/// Whether no job is running or due.
async fn settled(api: &Api, token: &str) -> bool {
    let answer = api.get("/api/v1/admin/jobs/queues", Some(token)).await;
    answer.body.as_array().is_some_and(|queues| {
        queues.iter().all(|q| {
            q["counts"]["running"].as_u64().unwrap_or(0) == 0 && q["oldestWaitingSeconds"].is_null()
        })
    })
}

pub async fn verify(
    api: &Api,
    args: &Args,
    fixture: &Fixture,
    outcome: &Outcome,
) -> anyhow::Result<Verdict> {
    let token = fixture.admin_token.as_str();
    let mut verdict = Verdict {
        accepted_orders: outcome.accepted.len(),
        ..Verdict::default()
    };
    let deadline = tokio::time::Instant::now() + args.settle_timeout;
    // Payments are confirmed by webhooks after a delay: wait for the jobs
    // to drain, twice in a row to cover a webhook still on its way.
    let mut quiet = 0;
    while tokio::time::Instant::now() < deadline && quiet < 3 {
        if settled(api, token).await {
            quiet += 1;
        } else {
            quiet = 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    verdict.jobs_settled = quiet >= 3;
    if !verdict.jobs_settled {
        verdict.problems.push(format!(
            "jobs did not settle within {:?}",
            args.settle_timeout
        ));
    }

    let server_orders = orders_of_users(api, token, fixture).await?;
    verdict.orders_on_server = server_orders.len();
    let accepted: HashSet<Uuid> = outcome.accepted.iter().map(|a| a.id).collect();
    verdict.lost = accepted
        .iter()
        .filter(|id| !server_orders.contains_key(*id))
        .count();
    verdict.unacknowledged = server_orders
        .keys()
        .filter(|id| !accepted.contains(*id))
        .count();
    if verdict.lost > 0 {
        verdict
            .problems
            .push(format!("{} accepted orders are missing", verdict.lost));
    }
    if verdict.unacknowledged > 0 && outcome.transport_errors == 0 {
        verdict.problems.push(format!(
            "{} orders exist that no request was answered with (duplicates?)",
            verdict.unacknowledged
        ));
    }

    // Each order in full (timeline), a few at a time.
    let details: Vec<(Uuid, anyhow::Result<Value>)> = stream::iter(server_orders.keys().copied())
        .map(|id| async move {
            let answer = api
                .get(&format!("/api/v1/admin/orders/{id}"), Some(token))
                .await;
            let result = if answer.status == 200 {
                Ok(answer.body)
            } else {
                Err(anyhow::anyhow!("reading order {id}: {}", answer.status))
            };
            (id, result)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut taken: HashMap<Uuid, i64> = HashMap::new();
    for (id, detail) in details {
        let order = match detail {
            Ok(order) => order,
            Err(e) => {
                verdict.problems.push(e.to_string());
                continue;
            }
        };
        let status = order["status"].as_str().unwrap_or("?").to_owned();
        *verdict.orders_by_status.entry(status.clone()).or_default() += 1;
        if status != "PROCESSED" {
            verdict.unexpected_status += 1;
            verdict
                .problems
                .push(format!("order {id} is {status}, expected PROCESSED"));
        }
        let steps: Vec<String> = order["timeline"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|e| e["to"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let expected_steps = ["PENDING", "PAID", "PROCESSED"];
        if steps != expected_steps {
            verdict.duplicated_transitions += 1;
            verdict
                .problems
                .push(format!("order {id} timeline is {steps:?}"));
        }
        let live = !matches!(status.as_str(), "CANCELED" | "REFUNDED");
        if live {
            for line in order["items"].as_array().into_iter().flatten() {
                if let (Some(item), Some(quantity)) = (
                    line["itemId"].as_str().and_then(|s| s.parse::<Uuid>().ok()),
                    line["quantity"].as_i64(),
                ) {
                    *taken.entry(item).or_default() += quantity;
                }
            }
        }
    }

    for replay in &outcome.replays {
        verdict.replays_checked += 1;
        let same = replay
            .answers
            .iter()
            .all(|(status, id, replayed)| *status == 201 && *id == Some(replay.first) && *replayed);
        if !same {
            verdict.replays_mismatched += 1;
            verdict.problems.push(format!(
                "key of order {} answered {:?}",
                replay.first, replay.answers
            ));
        }
    }
    for pair in &outcome.webhook_pairs {
        verdict.webhook_duplicates_checked += 1;
        if *pair != (false, true) {
            verdict.webhook_duplicates_mismatched += 1;
            verdict.problems.push(format!(
                "a duplicated webhook answered duplicate flags {pair:?}"
            ));
        }
    }

    for item in &fixture.items {
        let answer = api
            .get(&format!("/api/v1/admin/items/{}", item.id), Some(token))
            .await;
        let stock = answer.body["stock"].as_i64().unwrap_or(-1);
        let expected = item.initial_stock - taken.get(&item.id).copied().unwrap_or(0);
        if stock != expected {
            let line = format!("item {}: stock {stock}, expected {expected}", item.id);
            verdict.stock_mismatches.push(line.clone());
            verdict.problems.push(line);
        }
    }

    verdict.failed_jobs = failed_jobs(api, token)
        .await?
        .saturating_sub(fixture.failed_jobs_before);
    if verdict.failed_jobs > 0 {
        verdict.problems.push(format!(
            "{} jobs failed during the run",
            verdict.failed_jobs
        ));
    }
    Ok(verdict)
}

/// Every order of the run's users, by id, from the staff list.
async fn orders_of_users(
    api: &Api,
    token: &str,
    fixture: &Fixture,
) -> anyhow::Result<HashMap<Uuid, Value>> {
    let mut orders = HashMap::new();
    for user in &fixture.users {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/admin/orders?userId={}&limit=100", user.id);
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let answer = api.get(&path, Some(token)).await;
            let items = answer.body["items"].as_array().ok_or_else(|| {
                anyhow::anyhow!(
                    "listing orders failed with {}: {}",
                    answer.status,
                    answer.body
                )
            })?;
            for order in items {
                if let Some(id) = order["id"].as_str().and_then(|s| s.parse().ok()) {
                    orders.insert(id, order.clone());
                }
            }
            cursor = answer.body["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok(orders)
}
