//! `GET /api/v1/notifications/stream`: new notifications as Server-Sent
//! Events, with a replay from `Last-Event-ID`, fed by one task per stream
//! that follows the hub and re-checks the session.

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
};

use axum::{
    extract::{FromRequestParts, Query, State},
    http::{HeaderMap, request::Parts},
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use uuid::Uuid;

use super::{notification, queries, stream_slots::StreamSlot, views::NotificationView};
use crate::{
    auth::extract::{AuthUser, authenticate, bearer_token},
    http::{
        error::{ApiError, Problem},
        pagination::Cursor,
    },
    i18n::Lang,
    state::AppState,
};

/// The caller of the stream: a bearer token, or `?accessToken=` for
/// browsers' `EventSource`, which cannot send headers. The token is kept to
/// check the session again while the stream lasts.
pub struct StreamCaller {
    reader: AuthUser,
    token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenQuery {
    access_token: Option<String>,
}

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer_token(parts) {
            Some(token) => token.to_owned(),
            None => Query::<TokenQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.access_token)
                .ok_or_else(crate::auth::extract::missing_token)?,
        };
        let reader = authenticate(&token, state).await?;
        Ok(Self { reader, token })
    }
}

/// New notifications as they happen (Server-Sent Events).
///
/// Each event is `event: notification`, `id: <notification id>`, and the
/// notification as JSON, in the reader's language; comments keep the
/// connection alive. Reconnecting with `Last-Event-ID` first replays what
/// was missed since that notification, then goes live; nothing is sent
/// twice. The stream ends when the session ends (logout, revocation, token
/// expiry): reconnect with a fresh token. One stream more than
/// `SSE_MAX_PER_USER` for the user is refused with 429 `too_many_streams`,
/// one more than `SSE_MAX_STREAMS` in the process with 503
/// `streams_unavailable` (`stream_slots.rs` says why refuse).
#[utoipa::path(
    get, path = "/api/v1/notifications/stream", tag = "notifications",
    security(("bearer" = [])),
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last notification received"),
        ("accessToken" = Option<String>, Query, description = "The access token, for clients that cannot send an Authorization header (EventSource)"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = NotificationView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The user has `SSE_MAX_PER_USER` streams open (`too_many_streams`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The process has `SSE_MAX_STREAMS` streams open (`streams_unavailable`, with Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    caller: StreamCaller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Refused before anything is held (docs/spec.md §8.3).
    let slot = state.notifications.slots().open(caller.reader.id).await?;
    // Subscribe before reading the replay, so nothing falls in between.
    let live = state.notifications.subscribe();
    let resume = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
    {
        Some(id) => queries::find(state.db.conn(), caller.reader.id, id)
            .await?
            .map(|n| Cursor {
                created_at: n.created_at,
                id: n.id,
            }),
        None => None,
    };
    let (sender, receiver) = mpsc::channel::<Event>(64);
    let keep_alive = state.config.sse_keep_alive;
    tokio::spawn(feed(state, caller, resume, live, sender, slot));
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// Ids recently sent on one stream (so a replayed one is not sent again
/// live), bounded.
struct Sent {
    order: VecDeque<Uuid>,
    ids: HashSet<Uuid>,
}

impl Sent {
    const CAPACITY: usize = 1024;

    fn new() -> Self {
        Self {
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Records `id`; false if it was sent already.
    fn insert(&mut self, id: Uuid) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(id);
        self.order.push_back(id);
        true
    }
}

/// Feeds one stream until the client leaves or the session ends.
async fn feed(
    state: AppState,
    caller: StreamCaller,
    resume: Option<Cursor>,
    mut live: tokio::sync::broadcast::Receiver<super::hub::Published>,
    sender: mpsc::Sender<Event>,
    // Held while the stream is fed; its place frees when this task ends.
    _slot: StreamSlot,
) {
    let StreamCaller { mut reader, token } = caller;
    let mut sent = Sent::new();
    // Where a catch-up starts if the stream falls behind: the resumed
    // notification, or (a little before) the moment of connection.
    let connected = Cursor {
        created_at: crate::db::now() - chrono::Duration::seconds(1),
        id: Uuid::nil(),
    };
    let mut cursor = resume.unwrap_or(connected);
    if resume.is_some()
        && catch_up(&state, &reader, cursor, &mut sent, &mut cursor, &sender)
            .await
            .is_err()
    {
        return;
    }
    let mut session_check = tokio::time::interval(state.config.sse_keep_alive);
    session_check.tick().await;
    loop {
        tokio::select! {
            () = sender.closed() => return,
            _ = session_check.tick() => match authenticate(&token, &state).await {
                Ok(current) => reader = current,
                Err(_) => return,
            },
            received = live.recv() => match received {
                Ok(published) if published.user_id == reader.id => {
                    let row = match queries::find(state.db.conn(), reader.id, published.notification_id).await {
                        Ok(Some(row)) => row,
                        Ok(None) => continue,
                        Err(e) => {
                            // End the stream rather than skip one: the client
                            // reconnects with its Last-Event-ID and the replay
                            // brings what it missed.
                            tracing::warn!(error = %e, "notification stream could not load a notification; closing it");
                            return;
                        }
                    };
                    if !sent.insert(row.id) {
                        continue;
                    }
                    let position = Cursor { created_at: row.created_at, id: row.id };
                    cursor = later(cursor, position);
                    if send(&sender, row, reader.language.into()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "notification stream lagged; catching up from the database");
                    let from = cursor;
                    if catch_up(&state, &reader, from, &mut sent, &mut cursor, &sender).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn later(a: Cursor, b: Cursor) -> Cursor {
    if (b.created_at, b.id) > (a.created_at, a.id) {
        b
    } else {
        a
    }
}

/// Sends what the database holds after `from` that this stream has not sent.
async fn catch_up(
    state: &AppState,
    reader: &AuthUser,
    from: Cursor,
    sent: &mut Sent,
    cursor: &mut Cursor,
    sender: &mpsc::Sender<Event>,
) -> Result<(), ()> {
    let mut position = from;
    loop {
        let rows = queries::after(state.db.conn(), reader.id, position, 100)
            .await
            .map_err(|e| tracing::warn!(error = %e, "notification replay failed"))?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        position = Cursor {
            created_at: last.created_at,
            id: last.id,
        };
        let full_page = rows.len() == 100;
        for row in rows {
            if sent.insert(row.id) {
                send(sender, row, reader.language.into()).await?;
            }
        }
        *cursor = later(*cursor, position);
        if !full_page {
            return Ok(());
        }
    }
}

async fn send(
    sender: &mpsc::Sender<Event>,
    row: notification::Model,
    lang: Lang,
) -> Result<(), ()> {
    let id = row.id;
    let view = NotificationView::new(row, lang);
    let event = Event::default()
        .id(id.to_string())
        .event("notification")
        .json_data(&view)
        .map_err(|e| tracing::warn!(error = %e, "could not encode a notification"))?;
    sender.send(event).await.map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_never_sends_an_id_twice_and_forgets_the_oldest() {
        let mut sent = Sent::new();
        let first = Uuid::new_v4();
        assert!(sent.insert(first));
        assert!(!sent.insert(first));
        for _ in 0..Sent::CAPACITY {
            sent.insert(Uuid::new_v4());
        }
        assert!(sent.insert(first), "the oldest id was forgotten");
        assert!(sent.ids.len() <= Sent::CAPACITY);
    }

    #[test]
    fn the_cursor_only_moves_forward() {
        let now = crate::db::now();
        let a = Cursor {
            created_at: now,
            id: Uuid::nil(),
        };
        let b = Cursor {
            created_at: now + chrono::Duration::seconds(1),
            id: Uuid::nil(),
        };
        assert_eq!(later(a, b), b);
        assert_eq!(later(b, a), b);
    }
}
