//! Notifications: the stream's keep-alive and caps, and how long read ones
//! are kept.

use std::time::Duration;

use super::settings::{DefaultValue::Text, Reader, Setting, parse_number};

const SSE_KEEP_ALIVE: Setting = Setting {
    env: "SSE_KEEP_ALIVE",
    default: Text("15s"),
    doc: "interval of the notification stream's keep-alive comments and session re-checks",
};
const NOTIFICATION_RETENTION: Setting = Setting {
    env: "NOTIFICATION_RETENTION",
    default: Text("30d"),
    doc: "read notifications created longer ago than this are deleted",
};

const SSE_MAX_PER_USER: Setting = Setting {
    env: "SSE_MAX_PER_USER",
    default: Text("5"),
    doc: "open notification streams per user and process; one more is refused with 429",
};
const SSE_MAX_STREAMS: Setting = Setting {
    env: "SSE_MAX_STREAMS",
    default: Text("512"),
    doc: "open notification streams per process; one more is refused with 503",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &SSE_KEEP_ALIVE,
    &SSE_MAX_PER_USER,
    &SSE_MAX_STREAMS,
    &NOTIFICATION_RETENTION,
];

pub(super) struct Notifications {
    pub sse_keep_alive: Duration,
    pub sse_max_per_user: usize,
    pub sse_max_streams: usize,
    pub notification_retention: Duration,
}

fn at_least_one(v: &str) -> Result<usize, String> {
    match parse_number::<usize>(v)? {
        0 => Err("must be at least 1".to_owned()),
        n => Ok(n),
    }
}

pub(super) fn read(r: &mut Reader) -> Option<Notifications> {
    let sse_keep_alive = r.duration(&SSE_KEEP_ALIVE);
    let sse_max_per_user = r.parse(&SSE_MAX_PER_USER, at_least_one);
    let sse_max_streams = r.parse(&SSE_MAX_STREAMS, at_least_one);
    let notification_retention = r.duration(&NOTIFICATION_RETENTION);
    Some(Notifications {
        sse_keep_alive: sse_keep_alive?,
        sse_max_per_user: sse_max_per_user?,
        sse_max_streams: sse_max_streams?,
        notification_retention: notification_retention?,
    })
}
