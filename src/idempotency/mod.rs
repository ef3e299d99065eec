//! Idempotency keys (docs/spec.md §6.2), one mechanism for every creating `POST`.
//!
//! A request with a key first *claims* it ([`claim`]) in a short transaction
//! of its own, so that concurrent requests with the same key see it in flight
//! (409) instead of racing. (The checkout claims a key it has not seen
//! inside its first transaction instead, [`claim_in`]: a statement and a
//! pool checkout fewer on the hottest route.) The handler then performs its effect and calls
//! [`Claim::complete`] **inside the effect's transaction**: the stored
//! response commits or rolls back with the effect, so a replay can never
//! return something that was rolled back. If the handler fails before
//! committing, the claim is released on drop and the key may be retried; if
//! the process dies, the in-flight lease (`IDEMPOTENCY_LEASE`) expires and the next retry takes
//! the key over. Completion is fenced by the lease token, so a request whose
//! lease was taken over cannot also complete.
//!
//! Records live 24 hours; `idempotency.cleanup` (`retention`) removes expired ones.

mod key;
pub mod record;
pub mod retention;

pub use self::key::IdempotencyKey;

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr,
    sea_query::OnConflict,
};
use serde::Serialize;
use uuid::Uuid;

use self::record::{Entity as Records, RecordState};
use crate::{db::Database, http::error::ApiError};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a finished request's response is kept for replays.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// What a request may do with its key.
pub enum Claimed {
    /// First time (or a retry after a failure): go ahead.
    Proceed(Claim),
    /// Already done: answer with the stored response.
    Replay(Response),
}

/// A held key. Release on drop unless the effect committed.
pub struct Claim {
    record_id: Uuid,
    lease_token: Uuid,
    /// The recovery point left by an earlier holder of the key, if any.
    resource_id: Option<Uuid>,
    db: Database,
    committed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// `retry_after` is what is left of the holder's lease (at least a
    /// second): by then it has finished, or its key may be taken over.
    #[error("the key is being used by a request still in flight")]
    InFlight { retry_after: Duration },
    #[error("the key was used with a different request body")]
    Reused,
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

impl IdempotencyError {
    /// In flight with no lease to go by (the record kept moving, or another
    /// request took this one's lease over): come back in a second.
    const SOON: Self = Self::InFlight {
        retry_after: Duration::from_secs(1),
    };

    /// In flight under a lease that runs until `until` (after `now`).
    fn in_flight_until(
        until: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self::InFlight {
            retry_after: (until - now).to_std().unwrap_or_default(),
        }
    }
}

impl From<IdempotencyError> for ApiError {
    fn from(err: IdempotencyError) -> Self {
        match err {
            IdempotencyError::InFlight { retry_after } => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_key_in_flight")
                    .with_retry_after(retry_after)
            }
            IdempotencyError::Reused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            IdempotencyError::Database(e) => ApiError::internal(&e),
        }
    }
}

/// Claims `key` for `caller`'s request with body `fingerprint`.
pub async fn claim(
    db: &Database,
    key: &IdempotencyKey,
    caller: Option<Uuid>,
    fingerprint: &str,
    lease: Duration,
) -> Result<Claimed, IdempotencyError> {
    let scope = key.scope(caller);
    // A few rounds at most: each retry follows a concurrent change (an
    // expiry, a release, a takeover) that moved the record on.
    for _ in 0..4 {
        let now = db.now();
        // The usual case, a new key, is this one statement, committed on its
        // own; only a key seen before needs the transaction below.
        let fresh = NewRecord::new(&scope, key, fingerprint, lease, now);
        if fresh.insert(&*db.single_write().await?).await? {
            return Ok(Claimed::Proceed(fresh.into_claim(db, false)));
        }
        let txn = db.begin_write().await?;
        let Some(existing) = Records::find()
            .filter(record::Column::Scope.eq(scope.as_str()))
            .filter(record::Column::Key.eq(key.key.as_str()))
            .one(&*txn)
            .await?
        else {
            continue;
        };
        if existing.expires_at <= now {
            Records::delete_by_id(existing.id).exec(&*txn).await?;
            txn.commit().await?;
            continue;
        }
        if existing.fingerprint != fingerprint {
            return Err(IdempotencyError::Reused);
        }
        match existing.state {
            RecordState::Completed => return Ok(Claimed::Replay(replay(&existing))),
            RecordState::InFlight
                if let Some(until) = existing.locked_until.filter(|t| *t > now) =>
            {
                return Err(IdempotencyError::in_flight_until(until, now));
            }
            RecordState::InFlight => {
                // The holder died or hung past its lease: take the key over.
                let taken = Records::update_many()
                    .col_expr(record::Column::LeaseToken, Expr::value(fresh.lease_token))
                    .col_expr(record::Column::LockedUntil, Expr::value(fresh.locked_until))
                    .filter(record::Column::Id.eq(existing.id))
                    .filter(record::Column::State.eq(RecordState::InFlight))
                    .filter(record::Column::LeaseToken.eq(existing.lease_token))
                    .exec(&*txn)
                    .await?;
                txn.commit().await?;
                if taken.rows_affected == 1 {
                    return Ok(Claimed::Proceed(Claim {
                        record_id: existing.id,
                        lease_token: fresh.lease_token,
                        resource_id: existing.resource_id,
                        db: db.clone(),
                        committed: false,
                    }));
                }
            }
        }
    }
    Err(IdempotencyError::SOON)
}

/// Claims a key seen for the first time inside `txn`, the transaction of the
/// request's first effect, so that the key and the effect commit together
/// and no statement of its own is needed. Answers `None` if the key exists
/// (the caller rolls `txn` back and asks [`claim`], which knows what to do
/// with an existing key). A concurrent request with the same key waits on
/// the key's unique index until `txn` ends, then finds it in flight or
/// finished; if `txn` rolls back, the key was never taken and nothing needs
/// releasing.
pub async fn claim_in<C: ConnectionTrait>(
    txn: &C,
    db: &Database,
    key: &IdempotencyKey,
    caller: Option<Uuid>,
    fingerprint: &str,
    lease: Duration,
) -> Result<Option<Claim>, IdempotencyError> {
    let scope = key.scope(caller);
    let fresh = NewRecord::new(&scope, key, fingerprint, lease, db.now());
    Ok(if fresh.insert(txn).await? {
        Some(fresh.into_claim(db, true))
    } else {
        None
    })
}

/// The record of a key claimed for the first time.
struct NewRecord {
    model: record::ActiveModel,
    record_id: Uuid,
    lease_token: Uuid,
    locked_until: chrono::DateTime<chrono::Utc>,
}

impl NewRecord {
    /// Claimed at `now`, by the database's clock.
    fn new(
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &str,
        lease: Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let record_id = crate::db::new_id();
        let lease_token = crate::db::new_id();
        let locked_until = now + crate::duration::to_delta(lease);
        let model = record::ActiveModel {
            id: Set(record_id),
            scope: Set(scope.to_owned()),
            key: Set(key.key.clone()),
            fingerprint: Set(fingerprint.to_owned()),
            state: Set(RecordState::InFlight),
            lease_token: Set(Some(lease_token)),
            locked_until: Set(Some(locked_until)),
            response_status: Set(None),
            response_body: Set(None),
            resource_id: Set(None),
            created_at: Set(now),
            expires_at: Set(now + crate::duration::to_delta(RETENTION)),
        };
        Self {
            model,
            record_id,
            lease_token,
            locked_until,
        }
    }

    /// Inserts the record unless the key exists; true if it was inserted.
    async fn insert<C: ConnectionTrait>(&self, conn: &C) -> Result<bool, sea_orm::DbErr> {
        let inserted = Records::insert(self.model.clone())
            .on_conflict(
                OnConflict::columns([record::Column::Scope, record::Column::Key])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        Ok(inserted == 1)
    }

    /// `in_transaction`: inserted by a transaction not yet committed, whose
    /// rollback also frees the key (so dropping the claim releases nothing).
    fn into_claim(self, db: &Database, in_transaction: bool) -> Claim {
        Claim {
            record_id: self.record_id,
            lease_token: self.lease_token,
            resource_id: None,
            db: db.clone(),
            committed: in_transaction,
        }
    }
}

fn replay(record: &record::Model) -> Response {
    let status = record
        .response_status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body: serde_json::Value = record
        .response_body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

impl Claim {
    /// Stores the response in the effect's transaction `txn` and builds it.
    /// Fails (and the caller's transaction must roll back) if this request's
    /// lease was taken over meanwhile.
    pub async fn complete<C: ConnectionTrait, T: Serialize>(
        &self,
        txn: &C,
        status: StatusCode,
        body: &T,
    ) -> Result<Response, ApiError> {
        let json = serde_json::to_string(body).map_err(|e| ApiError::internal(&e))?;
        let done = Records::update_many()
            .col_expr(record::Column::State, Expr::value(RecordState::Completed))
            .col_expr(
                record::Column::ResponseStatus,
                Expr::value(i32::from(status.as_u16())),
            )
            .col_expr(record::Column::ResponseBody, Expr::value(json.clone()))
            .col_expr(
                record::Column::LeaseToken,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(
                record::Column::LockedUntil,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(record::Column::Id.eq(self.record_id))
            .filter(record::Column::LeaseToken.eq(self.lease_token))
            .filter(record::Column::State.eq(RecordState::InFlight))
            .exec(txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(IdempotencyError::SOON.into());
        }
        // The JSON just stored is the body: serialised once, not twice.
        let content_type = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        Ok((status, content_type, json).into_response())
    }

    /// What an earlier attempt with this key created before it stopped (its
    /// recovery point), so this attempt can resume it.
    pub fn resource_id(&self) -> Option<Uuid> {
        self.resource_id
    }

    /// Records, in the transaction that created it, what this request has
    /// created so far. A retry that takes the key over after a crash gets it
    /// from [`Claim::resource_id`]. Fails if the lease was taken over.
    pub async fn checkpoint<C: ConnectionTrait>(
        &mut self,
        txn: &C,
        resource_id: Uuid,
    ) -> Result<(), ApiError> {
        let updated = Records::update_many()
            .col_expr(record::Column::ResourceId, Expr::value(resource_id))
            .filter(record::Column::Id.eq(self.record_id))
            .filter(record::Column::LeaseToken.eq(self.lease_token))
            .filter(record::Column::State.eq(RecordState::InFlight))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(IdempotencyError::SOON.into());
        }
        self.resource_id = Some(resource_id);
        Ok(())
    }

    /// Frees the key inside `txn`, the transaction that undoes the request's
    /// effects, so the undo and the release commit together.
    pub async fn release<C: ConnectionTrait>(&self, txn: &C) -> Result<(), sea_orm::DbErr> {
        release_lease(txn, self.record_id, self.lease_token).await
    }

    /// Frees the key now (the request failed before any effect), so an
    /// immediate retry with the same key is not told it is in flight.
    /// Dropping the claim does the same in the background.
    pub async fn abandon(mut self) {
        release_alone(&self.db, self.record_id, self.lease_token).await;
        self.committed = true;
    }

    /// Call once the effect's transaction has committed.
    pub fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A key with a recovery point stays held: it remembers what the
        // request created, for the retry that resumes it after the lease.
        if self.committed || self.resource_id.is_some() {
            return;
        }
        // The effect did not commit: free the key so the client can retry.
        // Conditional on our lease, so it never removes a completed record
        // or someone else's claim.
        let (db, id, token) = (self.db.clone(), self.record_id, self.lease_token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release_alone(&db, id, token).await });
        }
    }
}

/// Deletes an in-flight record if `lease_token` still holds it (never a
/// completed record, nor someone else's claim).
async fn release_lease<C: ConnectionTrait>(
    conn: &C,
    record_id: Uuid,
    lease_token: Uuid,
) -> Result<(), sea_orm::DbErr> {
    Records::delete_many()
        .filter(record::Column::Id.eq(record_id))
        .filter(record::Column::LeaseToken.eq(lease_token))
        .filter(record::Column::State.eq(RecordState::InFlight))
        .exec(conn)
        .await?;
    Ok(())
}

/// [`release_lease`] as a statement of its own; a failure is only logged
/// (the key frees itself when its lease ends).
async fn release_alone(db: &Database, record_id: Uuid, lease_token: Uuid) {
    let result =
        async { release_lease(&*db.single_write().await?, record_id, lease_token).await }.await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not release an idempotency key; it frees itself when its lease ends");
    }
}

/// Frees the in-flight key whose recovery point is `resource_id`, whoever
/// holds it (recovery of an abandoned request: the undo and the release
/// commit together, and a later retry starts afresh).
pub async fn release_resource<C: ConnectionTrait>(
    conn: &C,
    resource_id: Uuid,
) -> Result<u64, sea_orm::DbErr> {
    Ok(Records::delete_many()
        .filter(record::Column::ResourceId.eq(resource_id))
        .filter(record::Column::State.eq(RecordState::InFlight))
        .exec(conn)
        .await?
        .rows_affected)
}
