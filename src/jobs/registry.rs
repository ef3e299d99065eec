//! Which code runs each job kind, and what a running job may use.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use uuid::Uuid;

use super::{Job, JobError, JobOptions, NewJob};
use crate::{
    cache::SharedCache, config::Config, db::Database, locks::SharedLocks,
    notifications::hub::NotificationHub, payments::gateway::SharedGateway,
};

/// The services jobs may use (never the HTTP request state).
#[derive(Clone)]
pub struct JobServices {
    pub db: Database,
    pub cache: SharedCache,
    pub config: Arc<Config>,
    pub gateway: SharedGateway,
    pub locks: SharedLocks,
    pub notifications: NotificationHub,
}

impl JobServices {
    pub fn from_state(state: &crate::state::AppState) -> Self {
        Self {
            db: state.db.clone(),
            cache: Arc::clone(&state.cache),
            config: Arc::new(state.config.clone()),
            gateway: Arc::clone(&state.gateway),
            locks: Arc::clone(&state.locks),
            notifications: state.notifications.clone(),
        }
    }

    /// The context of one attempt of job `job_id`.
    pub fn context(&self, job_id: Uuid, attempt: i32, worker: Uuid) -> JobContext {
        JobContext {
            db: self.db.clone(),
            cache: Arc::clone(&self.cache),
            config: Arc::clone(&self.config),
            gateway: Arc::clone(&self.gateway),
            locks: Arc::clone(&self.locks),
            notifications: self.notifications.clone(),
            job_id,
            attempt,
            worker,
        }
    }
}

/// What a running job may use: the services, and who it is.
#[derive(Clone)]
pub struct JobContext {
    pub db: Database,
    pub cache: SharedCache,
    pub config: Arc<Config>,
    pub gateway: SharedGateway,
    pub locks: SharedLocks,
    /// This process's notification streams (SQLite announces through it).
    pub notifications: NotificationHub,
    /// The job being run.
    pub job_id: Uuid,
    pub attempt: i32,
    /// The pool running it (its lease owner id).
    pub worker: Uuid,
}

/// A kind's handler with its payload type erased.
#[async_trait]
trait ErasedJob: Send + Sync {
    async fn run(&self, payload: &serde_json::Value, ctx: &JobContext) -> Result<(), JobError>;
    async fn run_batch(
        &self,
        batch: Vec<(&serde_json::Value, JobContext)>,
    ) -> Vec<Result<(), JobError>>;
    fn batched(&self) -> bool;
    fn compensation(&self, payload: &serde_json::Value) -> Option<NewJob>;
    fn options(&self) -> JobOptions;
}

struct Typed<J>(std::marker::PhantomData<fn() -> J>);

#[async_trait]
impl<J: Job> ErasedJob for Typed<J> {
    async fn run(&self, payload: &serde_json::Value, ctx: &JobContext) -> Result<(), JobError> {
        let job: J = serde_json::from_value(payload.clone())
            .map_err(|e| JobError::permanent(format!("payload does not match {}: {e}", J::KIND)))?;
        job.run(ctx).await
    }

    async fn run_batch(
        &self,
        batch: Vec<(&serde_json::Value, JobContext)>,
    ) -> Vec<Result<(), JobError>> {
        // Payloads that do not parse fail on their own; the rest run together.
        let mut outcomes: Vec<Option<Result<(), JobError>>> = Vec::with_capacity(batch.len());
        let mut parsed = Vec::with_capacity(batch.len());
        for (payload, ctx) in batch {
            match serde_json::from_value::<J>(payload.clone()) {
                Ok(job) => {
                    outcomes.push(None);
                    parsed.push((job, ctx));
                }
                Err(e) => outcomes.push(Some(Err(JobError::permanent(format!(
                    "payload does not match {}: {e}",
                    J::KIND
                ))))),
            }
        }
        let mut ran = J::run_batch(&parsed).await.into_iter();
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    ran.next().unwrap_or_else(|| {
                        Err(JobError::retryable(
                            "the batch gave no outcome for this job",
                        ))
                    })
                })
            })
            .collect()
    }

    fn batched(&self) -> bool {
        J::BATCHED
    }

    fn compensation(&self, payload: &serde_json::Value) -> Option<NewJob> {
        serde_json::from_value::<J>(payload.clone())
            .ok()?
            .compensation()
    }

    fn options(&self) -> JobOptions {
        J::options()
    }
}

/// Every job kind this process can run.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Arc<dyn ErasedJob>>,
}

impl Registry {
    /// The kinds Dispatch ships with.
    pub fn standard() -> Self {
        Self::default()
            .with::<super::maintenance::Cleanup>()
            .with::<super::diagnostics::Noop>()
            .with::<super::diagnostics::Probe>()
            .with::<crate::payments::customer_sync::CustomerSync>()
            .with::<crate::notifications::deliver::Deliver>()
            .with::<crate::orders::jobs::Process>()
            .with::<crate::orders::jobs::ProcessingFailed>()
            .with::<crate::orders::jobs::Expire>()
            .with::<crate::orders::cancel_payment::CancelPayment>()
            .with::<crate::orders::refunds::Refund>()
            .with::<crate::orders::reconcile::Reconcile>()
    }

    /// Adds a kind (tests add their own).
    pub fn with<J: Job>(mut self) -> Self {
        self.kinds
            .insert(J::KIND, Arc::new(Typed::<J>(std::marker::PhantomData)));
        self
    }

    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &&'static str> {
        self.kinds.keys()
    }

    pub async fn run(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        ctx: &JobContext,
    ) -> Result<(), JobError> {
        match self.kinds.get(kind) {
            Some(handler) => handler.run(payload, ctx).await,
            None => Err(JobError::permanent(format!(
                "no handler for job kind {kind}"
            ))),
        }
    }

    /// Whether `kind` runs claimed jobs in batches ([`Job::BATCHED`]).
    pub fn batched(&self, kind: &str) -> bool {
        self.kinds.get(kind).is_some_and(|h| h.batched())
    }

    /// Runs several jobs of `kind` at once; one outcome per job, in order.
    pub async fn run_batch(
        &self,
        kind: &str,
        batch: Vec<(&serde_json::Value, JobContext)>,
    ) -> Vec<Result<(), JobError>> {
        match self.kinds.get(kind) {
            Some(handler) => handler.run_batch(batch).await,
            None => batch
                .iter()
                .map(|_| {
                    Err(JobError::permanent(format!(
                        "no handler for job kind {kind}"
                    )))
                })
                .collect(),
        }
    }

    pub fn compensation(&self, kind: &str, payload: &serde_json::Value) -> Option<NewJob> {
        self.kinds.get(kind)?.compensation(payload)
    }

    pub fn options(&self, kind: &str) -> JobOptions {
        self.kinds
            .get(kind)
            .map(|h| h.options())
            .unwrap_or_default()
    }
}
