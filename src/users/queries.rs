//! Queries on users and addresses. Every read hides soft-deleted users.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    UserError,
    address::{self, Entity as Addresses},
    email::Email,
    language::Language,
    role::Role,
    user::{self, Entity as Users},
    views::{AddressInput, UserView},
};
use crate::{
    db::contains_folded,
    pagination::{Cursor, Page, PageRequest},
};

pub async fn find_live<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<Option<user::Model>, DbErr> {
    Users::find_by_id(id)
        .filter(user::Column::DeletedAt.is_null())
        .one(conn)
        .await
}

/// A user, deleted or not (jobs that must finish what a deletion started).
pub async fn find_any<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<Option<user::Model>, DbErr> {
    Users::find_by_id(id).one(conn).await
}

/// The user's Stripe customer id, if any (deleted or not: the checkout of a
/// user deleted meanwhile still needs an answer). One column, not the row.
pub async fn stripe_customer_id<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<Option<String>, DbErr> {
    Ok(Users::find_by_id(id)
        .select_only()
        .column(user::Column::StripeCustomerId)
        .into_tuple::<Option<String>>()
        .one(conn)
        .await?
        .flatten())
}

/// Stores the user's provider customer id, unless one is stored already (a
/// duplicated creation keeps the first).
pub async fn set_stripe_customer_id<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    customer_id: &str,
) -> Result<(), DbErr> {
    Users::update_many()
        .col_expr(
            user::Column::StripeCustomerId,
            Expr::value(customer_id.to_owned()),
        )
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::StripeCustomerId.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn find_live_by_email<C: ConnectionTrait>(
    conn: &C,
    email: &Email,
) -> Result<Option<user::Model>, DbErr> {
    Users::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .filter(user::Column::DeletedAt.is_null())
        .one(conn)
        .await
}

pub async fn find_address<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
) -> Result<Option<address::Model>, DbErr> {
    Addresses::find()
        .filter(address::Column::UserId.eq(user_id))
        .one(conn)
        .await
}

/// The full view of a live user.
pub async fn view<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<UserView>, DbErr> {
    let Some(user) = find_live(conn, id).await? else {
        return Ok(None);
    };
    let address = find_address(conn, id).await?;
    Ok(Some(UserView::new(user, address)))
}

pub struct NewUser {
    pub name: String,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub language: Language,
}

/// Inserts a user; a live user with the same email is `EmailTaken`.
pub async fn insert<C: ConnectionTrait>(conn: &C, new: NewUser) -> Result<user::Model, UserError> {
    let now = crate::db::now();
    let model = user::ActiveModel {
        id: Set(crate::db::new_id()),
        name_search: Set(crate::db::fold_for_search(&new.name)),
        name: Set(new.name),
        email: Set(new.email.into_string()),
        password_hash: Set(new.password_hash),
        role: Set(new.role),
        language: Set(new.language),
        stripe_customer_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    };
    model.insert(conn).await.map_err(email_conflict)
}

/// A unique violation on users can only be the live-email index.
pub fn email_conflict(err: DbErr) -> UserError {
    if crate::db::is_unique_violation(&err) {
        UserError::EmailTaken
    } else {
        UserError::Database(err)
    }
}

/// Sets, replaces or (with `None`) removes a user's address.
pub async fn set_address<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    input: Option<AddressInput>,
) -> Result<(), DbErr> {
    Addresses::delete_many()
        .filter(address::Column::UserId.eq(user_id))
        .exec(conn)
        .await?;
    if let Some(input) = input {
        let now = crate::db::now();
        address::ActiveModel {
            id: Set(crate::db::new_id()),
            user_id: Set(user_id),
            line1: Set(input.line1.trim().to_owned()),
            line2: Set(input
                .line2
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())),
            city: Set(input.city.trim().to_owned()),
            state: Set(input.state.trim().to_owned()),
            postal_code: Set(input.postal_code.trim().to_owned()),
            country: Set(input.country.to_ascii_uppercase()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(conn)
        .await?;
    }
    Ok(())
}

/// Changes to a user's own columns; `None` leaves a column alone.
#[derive(Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub password_hash: Option<String>,
    pub role: Option<Role>,
    pub language: Option<Language>,
}

pub async fn update<C: ConnectionTrait>(
    conn: &C,
    user: user::Model,
    changes: UserChanges,
) -> Result<user::Model, UserError> {
    let mut model: user::ActiveModel = user.into();
    if let Some(name) = changes.name {
        model.name_search = Set(crate::db::fold_for_search(&name));
        model.name = Set(name);
    }
    if let Some(email) = changes.email {
        model.email = Set(email.into_string());
    }
    if let Some(hash) = changes.password_hash {
        model.password_hash = Set(hash);
    }
    if let Some(role) = changes.role {
        model.role = Set(role);
    }
    if let Some(language) = changes.language {
        model.language = Set(language);
    }
    model.updated_at = Set(crate::db::now());
    model.update(conn).await.map_err(email_conflict)
}

/// Soft-deletes a live user. False if already gone.
pub async fn soft_delete<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<bool, DbErr> {
    let now = crate::db::now();
    let result = Users::update_many()
        .col_expr(user::Column::DeletedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::DeletedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Filters of the admin user list.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &UserFilter,
    page: &PageRequest,
) -> Result<Page<UserView>, DbErr> {
    let mut select = Users::find().filter(user::Column::DeletedAt.is_null());
    if let Some(name) = &filter.name {
        select = select.filter(contains_folded(user::Column::NameSearch, name));
    }
    if let Some(email) = &filter.email {
        select = select.filter(contains_folded(user::Column::Email, email));
    }
    if let Some(role) = filter.role {
        select = select.filter(user::Column::Role.eq(role));
    }
    let rows = page
        .apply(select, user::Column::CreatedAt, user::Column::Id)
        .all(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|u| u.id).collect();
    let mut addresses: std::collections::HashMap<Uuid, address::Model> = Addresses::find()
        .filter(address::Column::UserId.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|a| (a.user_id, a))
        .collect();
    Ok(page.finish(
        rows,
        |u| Cursor {
            created_at: u.created_at,
            id: u.id,
        },
        |u| {
            let address = addresses.remove(&u.id);
            UserView::new(u, address)
        },
    ))
}
