//! The queues, each with its own workers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Queue {
    Orders,
    Payments,
    Notifications,
    Maintenance,
}

impl Queue {
    pub const ALL: [Queue; 4] = [
        Queue::Orders,
        Queue::Payments,
        Queue::Notifications,
        Queue::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Orders => "orders",
            Queue::Payments => "payments",
            Queue::Notifications => "notifications",
            Queue::Maintenance => "maintenance",
        }
    }

    /// The database commit signal this queue's workers wait on.
    pub fn commit_topic(self) -> u32 {
        match self {
            Queue::Orders => 0,
            Queue::Payments => 1,
            Queue::Notifications => 2,
            Queue::Maintenance => 3,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == text)
    }

    /// Workers per process unless `JOB_CONCURRENCY_<QUEUE>` says otherwise.
    /// Payment calls wait on the network, so that queue gets more.
    pub fn default_concurrency(self) -> usize {
        match self {
            Queue::Orders => 8,
            Queue::Payments => 16,
            Queue::Notifications => 8,
            Queue::Maintenance => 2,
        }
    }
}
