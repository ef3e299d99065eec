//! Session rows and the per-request check that a session is still live.
//!
//! Every authenticated request asks [`SessionGate::current`] about the
//! token's session. The answer (live or not, and the user's current role and
//! language) is cached per user under a generation number (see `cache`); any
//! change to a user's sessions or account bumps the generation after commit,
//! so a logout, a role change or a deletion takes effect on the next request,
//! in every process sharing the cache. The database stays the source of
//! truth: a cache miss or outage reads it.
//!
//! Revocation never rests on a cache write succeeding. When the bump fails
//! (Redis unreachable, or a write lost), the entries cached before it would
//! still say "live" until their TTL ends; so the user is marked
//! *unconfirmed* in this process and their session checks read the database,
//! skipping the cache, until a later bump of theirs succeeds (each check
//! retries it) or until no entry written before the failure can still exist:
//! entries live `CACHE_TTL`, and one written by a request that read the
//! database before the change is written within `REQUEST_TIMEOUT` (the
//! timeout layer drops the request otherwise). Other processes read Redis:
//! if Redis is down for them too they read the database; a failure seen by
//! this process only (a partition) leaves them the TTL, the limit documented
//! in docs/operations.md.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session::{self, Entity as Sessions};
use crate::{
    cache::{SharedCache, read_through},
    db::Database,
    users::{language::Language, role::Role, user::Entity as Users},
};

/// What a request needs to know about its session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionState {
    pub user_id: Uuid,
    pub role: Role,
    pub language: Language,
    pub live: bool,
}

impl SessionState {
    /// A live session of an admin or superadmin: who may use the operator
    /// surfaces (the job queue's API and dashboard).
    pub fn is_live_admin(&self) -> bool {
        self.live && self.role.is_admin()
    }
}

#[derive(Clone)]
pub struct SessionGate {
    cache: SharedCache,
    ttl: Duration,
    /// Users whose last invalidation the cache did not confirm; entries
    /// expire when no stale cache entry can remain (see the module's doc).
    unconfirmed: moka::sync::Cache<Uuid, ()>,
}

fn namespace(user_id: Uuid) -> String {
    format!("sessions:{user_id}")
}

impl SessionGate {
    /// `ttl`: how long a check stays cached (`CACHE_TTL`);
    /// `request_timeout`: how long a request may run (`REQUEST_TIMEOUT`).
    pub fn new(cache: SharedCache, ttl: Duration, request_timeout: Duration) -> Self {
        Self {
            cache,
            ttl,
            unconfirmed: moka::sync::Cache::builder()
                .time_to_live(ttl.saturating_add(request_timeout))
                .build(),
        }
    }

    /// The state of session `session_id` of `user_id`; `None` if it does not exist.
    pub async fn current(
        &self,
        db: &Database,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<Option<SessionState>, DbErr> {
        if self.unconfirmed.contains_key(&user_id) && !self.confirm(user_id).await {
            return load_state(db, session_id).await;
        }
        read_through(
            self.cache.as_ref(),
            &namespace(user_id),
            &session_id.to_string(),
            self.ttl,
            || load_state(db, session_id),
        )
        .await
    }

    /// Call after committing any change to a user's sessions, role, language
    /// or existence.
    pub async fn invalidate_user(&self, user_id: Uuid) {
        if !self.confirm(user_id).await {
            tracing::warn!(
                user.id = %user_id,
                "session invalidation not confirmed by the cache; this user's session checks read the database"
            );
        }
    }

    /// Bumps the user's generation; true once the cache confirmed it (the
    /// user is then no longer unconfirmed), false after marking them so.
    async fn confirm(&self, user_id: Uuid) -> bool {
        let confirmed = self.cache.bump(&namespace(user_id)).await;
        if confirmed {
            self.unconfirmed.invalidate(&user_id);
        } else {
            self.unconfirmed.insert(user_id, ());
        }
        confirmed
    }

    /// How many users' invalidations are still unconfirmed in this process.
    pub fn unconfirmed_users(&self) -> u64 {
        self.unconfirmed.run_pending_tasks();
        self.unconfirmed.entry_count()
    }
}

async fn load_state(db: &Database, session_id: Uuid) -> Result<Option<SessionState>, DbErr> {
    let Some(row) = Sessions::find_by_id(session_id).one(db.conn()).await? else {
        return Ok(None);
    };
    let Some(user) = Users::find_by_id(row.user_id).one(db.conn()).await? else {
        return Ok(None);
    };
    let now = crate::db::now();
    Ok(Some(SessionState {
        user_id: user.id,
        role: user.role,
        language: user.language,
        live: row.revoked_at.is_none() && row.expires_at > now && user.deleted_at.is_none(),
    }))
}

/// A new session for a sign-in.
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_token_hash: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert<C: ConnectionTrait>(conn: &C, new: NewSession) -> Result<(), DbErr> {
    let now = crate::db::now();
    Sessions::insert(session::ActiveModel {
        id: Set(new.id),
        user_id: Set(new.user_id),
        refresh_generation: Set(0),
        refresh_token_hash: Set(new.refresh_token_hash),
        user_agent: Set(new.user_agent),
        ip: Set(new.ip),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    session_id: Uuid,
) -> Result<Option<session::Model>, DbErr> {
    Sessions::find_by_id(session_id).one(conn).await
}

/// Moves a live session from `generation` to the next one, storing the new
/// token's hash. False if another refresh got there first or it was revoked.
pub async fn rotate<C: ConnectionTrait>(
    conn: &C,
    session_id: Uuid,
    generation: i64,
    new_hash: String,
    expires_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = Sessions::update_many()
        .col_expr(
            session::Column::RefreshGeneration,
            Expr::value(generation + 1),
        )
        .col_expr(session::Column::RefreshTokenHash, Expr::value(new_hash))
        .col_expr(session::Column::LastUsedAt, Expr::value(crate::db::now()))
        .col_expr(session::Column::ExpiresAt, Expr::value(expires_at))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RefreshGeneration.eq(generation))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes one session. True if it was live.
pub async fn revoke<C: ConnectionTrait>(conn: &C, session_id: Uuid) -> Result<bool, DbErr> {
    let result = Sessions::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(crate::db::now()))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes every live session of a user except `keep`. Returns how many ended.
pub async fn revoke_all_of_user<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> Result<u64, DbErr> {
    let mut update = Sessions::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(crate::db::now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        update = update.filter(session::Column::Id.ne(keep));
    }
    Ok(update.exec(conn).await?.rows_affected)
}
