//! Cursor pagination (`docs/spec.md`): newest first, keyset on `(created_at, id)`.
//!
//! The cursor is the position of the last row served, base64url-encoded. A
//! keyset (rather than an offset) keeps pages stable while rows are inserted:
//! new rows sort before the cursor and never shift later pages, and the id
//! breaks ties between rows created in the same microsecond.
//!
//! The query side only: the queries of every domain take a [`PageRequest`]
//! and return a [`Page`]; reading one from a request's query string is the
//! HTTP edge's (`http::pagination`).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Orders `select` newest first, starts after the cursor and fetches one
    /// extra row to learn whether another page exists.
    pub fn apply<E: EntityTrait>(
        &self,
        select: Select<E>,
        created_at: E::Column,
        id: E::Column,
    ) -> Select<E> {
        let mut select = select
            .order_by_desc(created_at)
            .order_by_desc(id)
            .limit(self.limit + 1);
        if let Some(cursor) = self.after {
            select = select.filter(
                Condition::any().add(created_at.lt(cursor.created_at)).add(
                    Condition::all()
                        .add(created_at.eq(cursor.created_at))
                        .add(id.lt(cursor.id)),
                ),
            );
        }
        select
    }

    /// Cuts the extra row off and builds the page.
    pub fn finish<M, T>(
        &self,
        mut rows: Vec<M>,
        position: impl Fn(&M) -> Cursor,
        view: impl FnMut(M) -> T,
    ) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(|row| position(row).encode())
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
            has_more,
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The same page with each item turned into a view.
    pub fn map<U>(self, view: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(view).collect(),
            next_cursor: self.next_cursor,
            has_more: self.has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cursors_round_trip(micros in 0i64..4_102_444_800_000_000, bytes in any::<[u8; 16]>()) {
            let cursor = Cursor {
                created_at: DateTime::from_timestamp_micros(micros).unwrap(),
                id: Uuid::from_bytes(bytes),
            };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".*") {
            let _ = Cursor::decode(&text);
        }
    }
}
