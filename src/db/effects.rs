//! Effects that run after a write transaction commits, whoever wrote it.
//!
//! A domain names an effect ([`Effect`], e.g. the catalogue's "stock
//! changed"); the function that makes the change marks its transaction
//! with [`super::WriteTxn::after_commit`]; the composition root (start-up)
//! says once what the effect does ([`super::Database::on_commit`]).
//! [`super::WriteTxn::commit`] then runs every marked effect after the
//! commit succeeds, and a rollback runs none.
//!
//! Why not leave it to the callers: the cache invalidation after a restock
//! had to be remembered by every caller of a transition (nine of them), and
//! a forgotten one only shows as a stale catalogue page. Marking happens
//! where the change is written, so it cannot be forgotten, and this module
//! names no domain.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;

/// How many distinct effects a database offers (bits of a `u32`).
const EFFECTS: usize = 32;

/// One kind of after-commit effect. Each domain declares its own with a
/// number of its own (`catalog::STOCK_CHANGED` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect(u8);

impl Effect {
    /// Effect number `n`, below 32.
    pub const fn new(n: u8) -> Self {
        assert!((n as usize) < EFFECTS, "effect numbers are below 32");
        Self(n)
    }

    pub(super) fn bit(self) -> u32 {
        1 << self.0
    }
}

/// What an effect does, run after each commit that marked it.
pub type EffectHandler = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The handlers, set once each at start-up and shared by every clone of a
/// [`super::Database`].
#[derive(Default)]
pub struct Effects {
    handlers: [OnceLock<EffectHandler>; EFFECTS],
}

impl std::fmt::Debug for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<usize> = (0..EFFECTS)
            .filter(|&n| self.handlers[n].get().is_some())
            .collect();
        f.debug_struct("Effects").field("set", &set).finish()
    }
}

impl Effects {
    /// Sets what `effect` does; `false` if it was set already (the first
    /// handler stays).
    pub(super) fn set(&self, effect: Effect, handler: EffectHandler) -> bool {
        self.handlers[usize::from(effect.0)].set(handler).is_ok()
    }

    /// Runs the handlers of the effects in `marked` (a bit set), in order.
    pub(super) async fn run(&self, marked: u32) {
        for (n, handler) in self.handlers.iter().enumerate() {
            if marked & (1 << n) != 0
                && let Some(handler) = handler.get()
            {
                handler().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const COUNTED: Effect = Effect::new(3);

    #[tokio::test]
    async fn an_effect_runs_once_per_commit_that_marked_it_and_never_on_rollback() {
        let db = crate::db::Database::connect_sqlite("sqlite::memory:", 1)
            .await
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let handler: EffectHandler = Arc::new(move || {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        });
        assert!(db.on_commit(COUNTED, handler));

        let txn = db.begin_write().await.unwrap();
        txn.after_commit(COUNTED);
        txn.after_commit(COUNTED);
        txn.commit().await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let txn = db.begin_write().await.unwrap();
        txn.after_commit(COUNTED);
        txn.rollback().await.unwrap();
        let txn = db.begin_write().await.unwrap();
        txn.after_commit(COUNTED);
        drop(txn);
        let txn = db.begin_write().await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
