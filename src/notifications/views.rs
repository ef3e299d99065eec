//! Notifications on the wire, rendered in the reader's language.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{event::NotificationEvent, notification, texts};
use crate::i18n::Lang;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: Uuid,
    /// `auth.login`, `order.paid`, …
    #[schema(example = "order.paid")]
    pub event: String,
    pub title: String,
    pub message: String,
    /// What the texts were made from (order id, total, status…).
    pub data: serde_json::Value,
    pub read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl NotificationView {
    pub fn new(row: notification::Model, lang: Lang) -> Self {
        let event = NotificationEvent::from_stored(&row.event, &row.data);
        let (title, message) = match &event {
            Some(event) => texts::render(event, lang),
            None => texts::generic(&row.event, lang),
        };
        Self {
            id: row.id,
            event: row.event,
            title,
            message,
            data: row.data,
            read: row.read_at.is_some(),
            read_at: row.read_at,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HasNew {
    pub has_new: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAll {
    /// How many notifications were unread and are now read.
    pub updated: u64,
}
