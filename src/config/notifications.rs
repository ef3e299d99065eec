//! Notifications: the stream's keep-alive and how long read ones are kept.

use std::time::Duration;

use super::settings::{DefaultValue::Text, Reader, Setting};

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

pub(super) const SETTINGS: &[&Setting] = &[&SSE_KEEP_ALIVE, &NOTIFICATION_RETENTION];

pub(super) struct Notifications {
    pub sse_keep_alive: Duration,
    pub notification_retention: Duration,
}

pub(super) fn read(r: &mut Reader) -> Option<Notifications> {
    let sse_keep_alive = r.duration(&SSE_KEEP_ALIVE);
    let notification_retention = r.duration(&NOTIFICATION_RETENTION);
    Some(Notifications {
        sse_keep_alive: sse_keep_alive?,
        notification_retention: notification_retention?,
    })
}
