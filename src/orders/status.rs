//! The order life cycle of docs/spec.md §4.1 as plain data: which status may follow
//! which, and who may ask for it. [`super::transition`] is the only code that
//! writes a status, and it asks [`OrderStatus::may_become`] first.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    /// Stock reserved, waiting for the payment.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "PAID")]
    Paid,
    #[sea_orm(string_value = "PROCESSED")]
    Processed,
    #[sea_orm(string_value = "SHIPPED")]
    Shipped,
    #[sea_orm(string_value = "DELIVERED")]
    Delivered,
    #[sea_orm(string_value = "CANCELED")]
    Canceled,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
}

use OrderStatus::{Canceled, Delivered, Paid, Pending, Processed, Refunded, Shipped};

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Pending, Paid, Processed, Shipped, Delivered, Canceled, Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "PENDING",
            Paid => "PAID",
            Processed => "PROCESSED",
            Shipped => "SHIPPED",
            Delivered => "DELIVERED",
            Canceled => "CANCELED",
            Refunded => "REFUNDED",
        }
    }

    /// The edges of the life cycle (docs/spec.md §4.1).
    pub fn may_become(self, to: OrderStatus) -> bool {
        matches!(
            (self, to),
            (Pending, Paid)
                | (Paid, Processed)
                | (Processed, Shipped)
                | (Shipped, Delivered)
                | (Pending | Paid | Processed, Canceled)
                | (Paid | Processed | Shipped | Delivered, Refunded)
        )
    }

    /// Whether the customer has been charged for an order in this status
    /// (so leaving it means giving the money back).
    pub fn is_paid(self) -> bool {
        matches!(self, Paid | Processed | Shipped | Delivered)
    }

    /// Whether the goods are still in the shop: a refund from here puts the
    /// stock back (docs/spec.md §4.1: "if the goods never left").
    pub fn goods_in_stock(self) -> bool {
        matches!(self, Pending | Paid | Processed)
    }

    /// Statuses a staff member with `role` may list and view.
    pub fn visible_to_staff(self, role: crate::users::role::Role) -> bool {
        use crate::users::role::Role;
        match role {
            Role::Superadmin | Role::Admin | Role::Financial => true,
            Role::Shipper => matches!(self, Processed | Shipped | Delivered),
            Role::Delivery => matches!(self, Shipped | Delivered),
            Role::User => false,
        }
    }

    /// Whether a staff member with `role` may move an order to `self`
    /// (only the transitions with a staff trigger: ship, deliver, cancel,
    /// refund; payment and processing belong to the system).
    pub fn staff_may_set(self, role: crate::users::role::Role) -> bool {
        use crate::users::role::Role;
        let admin = role.is_admin();
        match self {
            Shipped => admin || role == Role::Shipper,
            Delivered => admin || role == Role::Delivery,
            Canceled | Refunded => admin || role == Role::Financial,
            Pending | Paid | Processed => false,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::role::Role;

    #[test]
    fn the_happy_path_is_a_chain() {
        let path = [Pending, Paid, Processed, Shipped, Delivered];
        for pair in path.windows(2) {
            assert!(pair[0].may_become(pair[1]), "{} → {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn shipped_orders_cannot_be_canceled_only_refunded() {
        assert!(!Shipped.may_become(Canceled));
        assert!(Shipped.may_become(Refunded));
        assert!(!Pending.may_become(Refunded));
    }

    #[test]
    fn final_statuses_have_no_way_out() {
        for from in [Canceled, Refunded] {
            for to in OrderStatus::ALL {
                assert!(!from.may_become(to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn no_status_follows_itself_and_nothing_goes_back_to_pending() {
        for status in OrderStatus::ALL {
            assert!(!status.may_become(status));
            assert!(!status.may_become(Pending));
        }
    }

    #[test]
    fn the_table_has_exactly_the_edges_of_the_spec() {
        let edges = OrderStatus::ALL
            .iter()
            .flat_map(|from| OrderStatus::ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.may_become(*to))
            .count();
        // 4 forward + 3 to CANCELED + 4 to REFUNDED.
        assert_eq!(edges, 11);
    }

    #[test]
    fn staff_roles_act_on_their_part_of_the_life_cycle() {
        assert!(Shipped.staff_may_set(Role::Shipper));
        assert!(!Delivered.staff_may_set(Role::Shipper));
        assert!(Delivered.staff_may_set(Role::Delivery));
        assert!(Refunded.staff_may_set(Role::Financial));
        assert!(!Shipped.staff_may_set(Role::Financial));
        assert!(!Paid.staff_may_set(Role::Superadmin));
        assert!(!Canceled.staff_may_set(Role::User));
    }
}
