//! The job queue: workers per queue, leases, polling, shutdown and retention.

use std::{collections::BTreeMap, time::Duration};

use super::settings::{
    DefaultValue::{Derived, Text},
    Reader, Setting, parse_number,
};

/// Workers per queue; unset leaves the queue's own default (`jobs::Queue`).
const JOB_CONCURRENCY: [(&str, Setting); 4] = [
    ("orders", concurrency("JOB_CONCURRENCY_ORDERS")),
    ("payments", concurrency("JOB_CONCURRENCY_PAYMENTS")),
    (
        "notifications",
        concurrency("JOB_CONCURRENCY_NOTIFICATIONS"),
    ),
    ("maintenance", concurrency("JOB_CONCURRENCY_MAINTENANCE")),
];

const fn concurrency(env: &'static str) -> Setting {
    Setting {
        env,
        default: Derived("the queue's own default"),
        doc: "workers of this queue in each worker process",
    }
}

const JOB_POLL_INTERVAL: Setting = Setting {
    env: "JOB_POLL_INTERVAL",
    default: Text("1s"),
    doc: "fallback wake-up of idle workers",
};
const JOB_LEASE: Setting = Setting {
    env: "JOB_LEASE",
    default: Text("30s"),
    doc: "how long a claimed job is its worker's without a heartbeat",
};
const JOB_SHUTDOWN_GRACE: Setting = Setting {
    env: "JOB_SHUTDOWN_GRACE",
    default: Text("20s"),
    doc: "how long running jobs may finish at shutdown",
};
const JOB_RETENTION: Setting = Setting {
    env: "JOB_RETENTION",
    default: Text("7d"),
    doc: "succeeded and discarded jobs are deleted after this",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &JOB_CONCURRENCY[0].1,
    &JOB_CONCURRENCY[1].1,
    &JOB_CONCURRENCY[2].1,
    &JOB_CONCURRENCY[3].1,
    &JOB_POLL_INTERVAL,
    &JOB_LEASE,
    &JOB_SHUTDOWN_GRACE,
    &JOB_RETENTION,
];

pub(super) struct Jobs {
    pub job_concurrency: BTreeMap<String, usize>,
    pub job_poll_interval: Duration,
    pub job_lease: Duration,
    pub job_shutdown_grace: Duration,
    pub job_retention: Duration,
}

pub(super) fn read(r: &mut Reader) -> Option<Jobs> {
    let mut job_concurrency = BTreeMap::new();
    for (queue, setting) in &JOB_CONCURRENCY {
        if let Some(Some(n)) = r.parse_optional(setting, parse_number::<usize>) {
            job_concurrency.insert((*queue).to_owned(), n);
        }
    }
    let job_poll_interval = r.duration(&JOB_POLL_INTERVAL);
    let job_lease = r.duration(&JOB_LEASE);
    let job_shutdown_grace = r.duration(&JOB_SHUTDOWN_GRACE);
    let job_retention = r.duration(&JOB_RETENTION);
    Some(Jobs {
        job_concurrency,
        job_poll_interval: job_poll_interval?,
        job_lease: job_lease?,
        job_shutdown_grace: job_shutdown_grace?,
        job_retention: job_retention?,
    })
}
