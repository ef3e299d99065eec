//! The virtual users: each loops over its scenario's operations until the
//! deadline or the request budget, recording every answer.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{
    Args, Scenario,
    client::{Answer, Api},
    setup::Fixture,
};

/// What one kind of operation saw.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub latencies_us: Vec<u64>,
    pub statuses: BTreeMap<u16, u64>,
}

/// An order the service accepted (201), as the client asked for it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: Uuid,
}

/// A key sent several times and the order ids it answered with.
#[derive(Debug, Clone)]
pub struct Replay {
    pub first: Uuid,
    pub answers: Vec<(u16, Option<Uuid>, bool)>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub elapsed: Duration,
    pub samples: BTreeMap<&'static str, Samples>,
    pub accepted: Vec<Accepted>,
    pub replays: Vec<Replay>,
    /// Duplicated webhook deliveries: (first answer's duplicate flag, second's).
    pub webhook_pairs: Vec<(bool, bool)>,
    /// Requests that failed at the transport level (the order may exist).
    pub transport_errors: u64,
    /// Operations whose answer was not one the scenario accepts.
    pub unexpected_answers: u64,
}

#[derive(Default)]
struct Shared {
    outcome: Mutex<Outcome>,
}

impl Shared {
    async fn record(&self, kind: &'static str, answer: &Answer) {
        let mut outcome = self.outcome.lock().await;
        if answer.status == 0 {
            outcome.transport_errors += 1;
        }
        let samples = outcome.samples.entry(kind).or_default();
        samples
            .latencies_us
            .push(u64::try_from(answer.latency.as_micros()).unwrap_or(u64::MAX));
        *samples.statuses.entry(answer.status).or_default() += 1;
    }
}

struct Budget {
    deadline: Instant,
    limit: Option<u64>,
    used: AtomicU64,
    errors: AtomicU64,
    permits: Option<Mutex<tokio::sync::mpsc::Receiver<()>>>,
}

impl Budget {
    /// Takes one operation from the budget (waiting for the rate, if any).
    async fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        if let Some(limit) = self.limit
            && self.used.fetch_add(1, Ordering::AcqRel) >= limit
        {
            return false;
        } else if self.limit.is_none() {
            self.used.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(permits) = &self.permits {
            let mut permits = permits.lock().await;
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            return matches!(
                tokio::time::timeout(remaining, permits.recv()).await,
                Ok(Some(()))
            );
        }
        true
    }
}

pub async fn run(api: &Api, args: &Args, fixture: Arc<Fixture>) -> Outcome {
    let started = Instant::now();
    let deadline = if args.requests.is_some() {
        started + Duration::from_secs(24 * 3600)
    } else {
        started + args.duration
    };
    let permits = args.rate.map(|rate| {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            while sender.send(()).await.is_ok() {
                ticks.tick().await;
            }
        });
        Mutex::new(receiver)
    });
    let budget = Arc::new(Budget {
        deadline,
        limit: args.requests,
        used: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        permits,
    });
    let shared = Arc::new(Shared::default());
    let progress = tokio::spawn(progress(Arc::clone(&budget), started));
    let mut users = Vec::new();
    for index in 0..args.users {
        let api = api.clone();
        let fixture = Arc::clone(&fixture);
        let budget = Arc::clone(&budget);
        let shared = Arc::clone(&shared);
        let scenario = args.scenario;
        let secret = args.webhook_secret.clone();
        users.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(index as u64);
            let vu = VirtualUser {
                api,
                fixture,
                shared,
                index,
                secret,
            };
            while budget.take().await {
                let ok = vu.step(scenario, &mut rng).await;
                if !ok {
                    budget.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for user in users {
        let _ = user.await;
    }
    progress.abort();
    let mut outcome = std::mem::take(&mut *shared.outcome.lock().await);
    outcome.elapsed = started.elapsed();
    outcome.unexpected_answers = budget.errors.load(Ordering::Relaxed);
    outcome
}

async fn progress(budget: Arc<Budget>, started: Instant) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let used = budget.used.load(Ordering::Relaxed);
        eprint!(
            "\r  {elapsed:>5.0}s  operations {used:>8}  ({:>7.1}/s)  unexpected answers {:>5}",
            used as f64 / elapsed,
            budget.errors.load(Ordering::Relaxed)
        );
    }
}

struct VirtualUser {
    api: Api,
    fixture: Arc<Fixture>,
    shared: Arc<Shared>,
    index: usize,
    secret: Option<String>,
}

impl VirtualUser {
    /// One operation of the scenario; false when an answer was unexpected.
    async fn step(&self, scenario: Scenario, rng: &mut StdRng) -> bool {
        let pick = match scenario {
            Scenario::Mixed => match rng.random_range(0..100) {
                0..70 => Scenario::Browse,
                70..95 => Scenario::Checkout,
                _ => Scenario::Duplicates,
            },
            other => other,
        };
        match pick {
            Scenario::Browse => self.browse(rng).await,
            Scenario::Checkout => self.checkout(rng).await.is_some(),
            Scenario::Duplicates | Scenario::Mixed => self.duplicates(rng).await,
            Scenario::SignIns => self.sign_in(rng).await,
        }
    }

    /// One sign-in, with a wrong password half the time. The service may
    /// refuse it (429) or shed it (503, which must say when to retry).
    async fn sign_in(&self, rng: &mut StdRng) -> bool {
        let Some(user) = self.user() else {
            return false;
        };
        let password = if rng.random_bool(0.5) {
            self.fixture.password.clone()
        } else {
            format!("wrong-{}", self.fixture.password)
        };
        let answer = self
            .api
            .post_json(
                "/api/v1/auth/login",
                None,
                None,
                &json!({"email": user.email, "password": password}),
            )
            .await;
        self.shared.record("sign-in", &answer).await;
        match answer.status {
            200 | 401 | 429 => true,
            503 => answer.retry_after,
            _ => false,
        }
    }

    fn user(&self) -> Option<&crate::setup::User> {
        let users = &self.fixture.users;
        (!users.is_empty()).then(|| &users[self.index % users.len()])
    }

    async fn browse(&self, rng: &mut StdRng) -> bool {
        let answer = if rng.random_bool(0.5) {
            self.api.get("/api/v1/items?limit=20", None).await
        } else {
            let item = self
                .fixture
                .items
                .choose(rng)
                .map(|i| i.id)
                .unwrap_or_default();
            self.api.get(&format!("/api/v1/items/{item}"), None).await
        };
        self.shared.record("browse", &answer).await;
        answer.status == 200
    }

    fn order_body(&self, rng: &mut StdRng) -> Value {
        let count = rng.random_range(1..=3);
        let mut items: Vec<&crate::setup::Item> =
            self.fixture.items.choose_multiple(rng, count).collect();
        items.sort_by_key(|i| i.id);
        let lines: Vec<Value> = items
            .iter()
            .map(|i| json!({"itemId": i.id, "quantity": rng.random_range(1..=2)}))
            .collect();
        json!({ "items": lines })
    }

    /// Places one order with a fresh key; the order if accepted.
    async fn checkout(&self, rng: &mut StdRng) -> Option<(Uuid, Value)> {
        let user = self.user()?;
        let body = self.order_body(rng);
        let key = Uuid::new_v4().to_string();
        let answer = self
            .api
            .post_json("/api/v1/orders", Some(&user.token), Some(&key), &body)
            .await;
        self.shared.record("checkout", &answer).await;
        let id = (answer.status == 201)
            .then(|| answer.body["id"].as_str().and_then(|s| s.parse().ok()))
            .flatten()?;
        self.shared
            .outcome
            .lock()
            .await
            .accepted
            .push(Accepted { id });
        Some((id, answer.body))
    }

    /// An order whose request is sent three times with one key, then its
    /// payment webhook delivered twice.
    async fn duplicates(&self, rng: &mut StdRng) -> bool {
        let Some(user) = self.user() else {
            return false;
        };
        let body = self.order_body(rng);
        let key = Uuid::new_v4().to_string();
        let first = self
            .api
            .post_json("/api/v1/orders", Some(&user.token), Some(&key), &body)
            .await;
        self.shared.record("duplicates.order", &first).await;
        let Some(id) = (first.status == 201)
            .then(|| {
                first.body["id"]
                    .as_str()
                    .and_then(|s| s.parse::<Uuid>().ok())
            })
            .flatten()
        else {
            return false;
        };
        self.shared
            .outcome
            .lock()
            .await
            .accepted
            .push(Accepted { id });
        let mut answers = Vec::new();
        let mut ok = true;
        for _ in 0..2 {
            let again = self
                .api
                .post_json("/api/v1/orders", Some(&user.token), Some(&key), &body)
                .await;
            self.shared.record("duplicates.replay", &again).await;
            let again_id = again.body["id"].as_str().and_then(|s| s.parse().ok());
            // 409 "in flight" is a correct answer to a replay racing the
            // first request; here the first has finished.
            ok &= again.status == 201 && again.replayed && again_id == Some(id);
            answers.push((again.status, again_id, again.replayed));
        }
        self.shared
            .outcome
            .lock()
            .await
            .replays
            .push(Replay { first: id, answers });
        if let Some(secret) = &self.secret {
            ok &= self.duplicate_webhook(&first.body, id, secret).await;
        }
        ok
    }

    async fn duplicate_webhook(&self, order: &Value, id: Uuid, secret: &str) -> bool {
        // Stripe's client secrets are `<PaymentIntent id>_secret_<…>`.
        let Some(intent) = order["payment"]["clientSecret"]
            .as_str()
            .and_then(|s| s.split_once("_secret_"))
            .map(|(intent, _)| intent.to_owned())
        else {
            return false;
        };
        let event = json!({
            "id": format!("evt_loadtest_{}", Uuid::new_v4().simple()),
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": dispatch::db::now().timestamp(),
            "data": {"object": {
                "id": intent,
                "object": "payment_intent",
                "amount": order["total"],
                "currency": order["currency"],
                "status": "succeeded",
                "metadata": {"order_id": id.to_string()},
            }},
        })
        .to_string();
        let mut flags = Vec::new();
        for _ in 0..2 {
            let header = dispatch::payments::signature::sign(
                event.as_bytes(),
                secret,
                dispatch::db::now().timestamp(),
            );
            let request = self
                .api
                .request(reqwest::Method::POST, "/api/v1/payments/webhook")
                .header("Stripe-Signature", header)
                .header("Content-Type", "application/json")
                .body(event.clone());
            let answer = self.api.send(request).await;
            self.shared.record("duplicates.webhook", &answer).await;
            if answer.status != 200 {
                return false;
            }
            flags.push(answer.body["duplicate"].as_bool().unwrap_or(false));
        }
        let pair = (flags[0], flags[1]);
        self.shared.outcome.lock().await.webhook_pairs.push(pair);
        pair == (false, true)
    }
}
