//! The catalogue: items with price and stock, a public view (cached) and a
//! staff view with the payment price id.

pub mod admin_routes;
pub mod item;
pub mod queries;
pub mod routes;
pub mod views;

use std::sync::Arc;

use crate::{
    cache::SharedCache,
    db::effects::{Effect, EffectHandler},
    state::AppState,
};

/// Cache namespace of every catalogue entry (public and staff views).
pub const CACHE_NAMESPACE: &str = "catalog";

/// Stock was taken or given back in a transaction ([`queries::take_stock`],
/// [`queries::put_back_stock`] mark it): once it commits, the catalogue's
/// cached pages are stale.
pub const STOCK_CHANGED: Effect = Effect::new(0);

/// What [`STOCK_CHANGED`] does (start-up registers it on the database).
pub fn on_stock_changed(cache: SharedCache) -> EffectHandler {
    Arc::new(move || {
        let cache = Arc::clone(&cache);
        Box::pin(async move {
            // A failed bump is logged by the cache; catalogue entries then
            // expire by TTL (a stale price or stock figure for up to
            // CACHE_TTL, which the checkout re-reads from the database anyway).
            let _ = cache.bump(CACHE_NAMESPACE).await;
        })
    })
}

/// Makes every cached catalogue read stale. Staff item routes call it after
/// committing an item change; stock taken or given back by orders does it
/// through [`STOCK_CHANGED`] instead.
pub async fn invalidate_cache(state: &AppState) {
    let _ = state.cache.bump(CACHE_NAMESPACE).await;
}
