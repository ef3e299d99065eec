//! Revocation does not depend on a cache write succeeding: a session gate
//! whose cache refuses the invalidation reads the database until the cache
//! confirms one. The cache is faked at its interface (`Cache`), the database
//! is the test app's own; the app's routes do the signing in and out.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use dispatch::{
    auth::{session, sessions::SessionGate},
    cache::{Cache, MemoryCache},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::helpers::spawn_app;

/// An in-process cache whose invalidations fail while `failing` is set,
/// like Redis on a dropped connection (reads and writes still work: the
/// worst case, where the stale entry stays readable).
struct FlakyCache {
    inner: MemoryCache,
    failing: AtomicBool,
}

#[async_trait]
impl Cache for FlakyCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.inner.set(key, value, ttl).await;
    }
    async fn generation(&self, namespace: &str) -> Option<u64> {
        self.inner.generation(namespace).await
    }
    async fn bump(&self, namespace: &str) -> bool {
        if self.failing.load(Ordering::Acquire) {
            return false;
        }
        self.inner.bump(namespace).await
    }
}

#[tokio::test]
async fn a_failed_invalidation_does_not_leave_a_logged_out_session_live() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session_id = session::Entity::find()
        .filter(session::Column::UserId.eq(user.id))
        .one(app.state.db.conn())
        .await
        .unwrap()
        .expect("the registration's session")
        .id;

    let cache = Arc::new(FlakyCache {
        inner: MemoryCache::new(Duration::from_secs(3600), 8 << 20),
        failing: AtomicBool::new(false),
    });
    let gate = SessionGate::new(
        cache.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    let check = || async {
        gate.current(&app.state.db, user.id, session_id)
            .await
            .unwrap()
            .expect("the session row")
            .live
    };
    assert!(check().await, "live, and now cached as live");

    let logout = app
        .post("/api/v1/auth/logout")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    cache.failing.store(true, Ordering::Release);
    gate.invalidate_user(user.id).await;
    assert_eq!(gate.unconfirmed_users(), 1);

    // The cached entry still says live; the gate must not believe it.
    assert!(
        !check().await,
        "a logged-out session checked after a failed invalidation"
    );
    assert!(!check().await, "and again while the cache keeps failing");
    assert_eq!(gate.unconfirmed_users(), 1);

    // The cache answers again: the next check confirms the invalidation.
    cache.failing.store(false, Ordering::Release);
    assert!(!check().await);
    assert_eq!(gate.unconfirmed_users(), 0);
    assert!(!check().await, "from the cache now, at the new generation");
    app.drain_jobs().await;
}
