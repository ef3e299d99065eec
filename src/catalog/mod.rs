//! The catalogue: items with price and stock, a public view (cached) and a
//! staff view with the payment price id.

pub mod admin_routes;
pub mod item;
pub mod queries;
pub mod routes;
pub mod views;

use crate::state::AppState;

/// Cache namespace of every catalogue entry (public and staff views).
pub const CACHE_NAMESPACE: &str = "catalog";

/// Makes every cached catalogue read stale. Call after committing any change
/// to items, including stock taken or restored by orders.
pub async fn invalidate_cache(state: &AppState) {
    state.cache.bump(CACHE_NAMESPACE).await;
}
