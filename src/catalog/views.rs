//! Items on the wire: the public view and the staff view.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::item;

/// An item as shoppers see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Minor units (cents) of `currency`.
    #[schema(example = 1999)]
    pub price: i64,
    #[schema(example = "usd")]
    pub currency: String,
    pub stock: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An item as staff see it: the public fields plus the payment price id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminItemView {
    #[serde(flatten)]
    pub item: ItemView,
    pub price_payment_id: Option<String>,
    /// Set when the item is soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<item::Model> for ItemView {
    fn from(item: item::Model) -> Self {
        Self {
            id: item.id,
            name: item.name,
            description: item.description,
            price: item.price,
            currency: item.currency.to_string(),
            stock: item.stock,
            created_at: item.created_at,
            updated_at: item.updated_at,
        }
    }
}

impl From<item::Model> for AdminItemView {
    fn from(item: item::Model) -> Self {
        let price_payment_id = item.price_payment_id.clone();
        let deleted_at = item.deleted_at;
        Self {
            item: ItemView::from(item),
            price_payment_id,
            deleted_at,
        }
    }
}
