//! Roles and the level rules of docs/spec.md §3.1.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an account may do. Staff roles (`financial`, `shipper`, `delivery`)
/// each see and act on one part of the order life cycle.
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
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[sea_orm(string_value = "superadmin")]
    Superadmin,
    #[sea_orm(string_value = "admin")]
    Admin,
    #[sea_orm(string_value = "financial")]
    Financial,
    #[sea_orm(string_value = "shipper")]
    Shipper,
    #[sea_orm(string_value = "delivery")]
    Delivery,
    #[sea_orm(string_value = "user")]
    User,
}

impl Role {
    /// Rank used by the "never at or above your own level" rule.
    pub fn level(self) -> u8 {
        match self {
            Role::Superadmin => 99,
            Role::Admin => 10,
            Role::Financial | Role::Shipper | Role::Delivery => 2,
            Role::User => 1,
        }
    }

    pub fn is_staff(self) -> bool {
        self.level() >= 2
    }

    /// Admins and superadmins: account management and the catalogue.
    pub fn is_admin(self) -> bool {
        self.level() >= Role::Admin.level()
    }

    /// Whether an actor with this role may create an account with, or give an
    /// account, `target`.
    pub fn may_grant(self, target: Role) -> bool {
        self.is_admin() && target.level() < self.level()
    }

    /// Whether an actor with this role may change or delete an account that
    /// currently has `target`.
    pub fn may_manage(self, target: Role) -> bool {
        self.is_admin() && target.level() < self.level()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superadmin => "superadmin",
            Role::Admin => "admin",
            Role::Financial => "financial",
            Role::Shipper => "shipper",
            Role::Delivery => "delivery",
            Role::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use sea_orm::Iterable;
        Role::iter().find(|r| r.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_grants_or_manages_a_level_at_or_above_their_own() {
        assert!(Role::Superadmin.may_grant(Role::Admin));
        assert!(!Role::Superadmin.may_grant(Role::Superadmin));
        assert!(
            !Role::Superadmin.may_manage(Role::Superadmin),
            "superadmins are protected"
        );
        assert!(Role::Admin.may_grant(Role::Shipper));
        assert!(!Role::Admin.may_grant(Role::Admin));
        assert!(!Role::Admin.may_manage(Role::Admin));
        assert!(
            !Role::Financial.may_grant(Role::User),
            "staff do not manage accounts"
        );
        assert!(!Role::User.may_manage(Role::User));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        use sea_orm::Iterable;
        for role in Role::iter() {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
