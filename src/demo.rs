//! Demo data for development: a superadmin and a few items, created on the
//! first start only. The admin's password is generated and printed once; it
//! is not stored anywhere in clear (use `dispatch create-admin` to make
//! another account if it is lost).

use anyhow::Context;
use sea_orm::{EntityTrait, PaginatorTrait};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    catalog::{self, queries::NewItem},
    money::Money,
    state::AppState,
    users::{
        email::Email,
        language::Language,
        queries::{self, NewUser},
        role::Role,
        user::Entity as Users,
    },
};

pub const DEMO_ADMIN_EMAIL: &str = "admin@dispatch.local";

/// Seeds an empty database. Does nothing if any user exists.
pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    if Users::find().count(state.db.conn()).await? > 0 {
        return Ok(());
    }
    let password = SecretString::from(random_password());
    let password_hash = state.passwords.hash(&password).await?;
    let txn = state.db.begin_write().await?;
    // Re-checked inside the write transaction: two processes starting on an
    // empty database seed once.
    if Users::find().count(&*txn).await? > 0 {
        return Ok(());
    }
    queries::insert(
        &*txn,
        NewUser {
            name: "Demo Admin".to_owned(),
            email: Email::parse(DEMO_ADMIN_EMAIL).context("the demo admin's email")?,
            password_hash,
            role: Role::Superadmin,
            language: Language::En,
        },
    )
    .await
    .context("creating the demo admin")?;
    for (name, description, price, stock) in [
        ("Enamel mug", "A 350 ml enamel camping mug.", 1_250, 120),
        (
            "Canvas tote",
            "Heavy cotton tote bag with inner pocket.",
            1_900,
            80,
        ),
        (
            "Field notebook",
            "Pocket notebook, 48 dotted pages.",
            650,
            300,
        ),
        ("Wool beanie", "Merino wool beanie, one size.", 2_800, 40),
        ("Steel bottle", "Insulated 750 ml steel bottle.", 3_450, 0),
    ] {
        catalog::queries::insert(
            &*txn,
            NewItem {
                name: name.to_owned(),
                description: description.to_owned(),
                price: Money::new(price, state.config.shop_currency),
                stock,
                price_payment_id: None,
            },
        )
        .await?;
    }
    txn.commit().await?;
    println!(
        "Demo data seeded. Sign in as {DEMO_ADMIN_EMAIL} with password {} (shown only this once).",
        password.expose_secret()
    );
    Ok(())
}

fn random_password() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}
