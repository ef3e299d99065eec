//! The state every handler can reach, cheap to clone (one `Arc`).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    auth::{
        password::PasswordHasher, sessions::SessionGate, throttle::SignInThrottle,
        tokens::TokenKeys,
    },
    cache::SharedCache,
    config::Config,
    db::Database,
    kv::Kv,
    locks::SharedLocks,
    notifications::hub::NotificationHub,
    payments::{gateway::SharedGateway, simulated::SimulatedGateway},
    rate_limit::SharedRateLimiter,
};

#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services of one process, chosen from configuration at start-up.
pub struct Services {
    pub config: Config,
    pub db: Database,
    /// Redis, when configured (readiness checks it).
    pub kv: Option<Kv>,
    pub cache: SharedCache,
    pub rate_limiter: SharedRateLimiter,
    /// In front of every password check (docs/spec.md §6.7).
    pub sign_in_throttle: SignInThrottle,
    pub tokens: TokenKeys,
    pub passwords: PasswordHasher,
    pub sessions: SessionGate,
    pub gateway: SharedGateway,
    /// The same gateway as `gateway` when it is the simulated one (its
    /// webhook target is set at start-up; tests drive it).
    pub simulated_gateway: Option<Arc<SimulatedGateway>>,
    pub locks: SharedLocks,
    /// Fan-out of new notifications to this process's live streams.
    pub notifications: NotificationHub,
    pub metrics: PrometheusHandle,
    /// When the job-queue gauges of `/metrics` were last computed.
    pub queue_gauges: crate::http::health::QueueGauges,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}
