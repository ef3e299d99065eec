//! Before the run: an admin session, items of our own (so stock can be
//! accounted for exactly), and the virtual users' accounts.

use futures::{StreamExt, stream};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Args, Scenario,
    client::{Answer, Api},
};

pub struct Item {
    pub id: Uuid,
    pub initial_stock: i64,
}

pub struct User {
    pub id: Uuid,
    pub token: String,
    pub email: String,
}

pub struct Fixture {
    pub run: String,
    /// Every virtual user's password.
    pub password: String,
    pub admin_token: String,
    pub items: Vec<Item>,
    pub users: Vec<User>,
    /// Failed jobs before the run (the verification compares).
    pub failed_jobs_before: u64,
}

const ITEMS: usize = 20;
const STOCK: i64 = 10_000_000;
/// Accounts the sign-in flood aims at: a few, so that setting up a flood
/// of 1 000 users does not cost 1 000 registrations.
const SIGN_IN_ACCOUNTS: usize = 8;

pub async fn prepare(api: &Api, args: &Args) -> anyhow::Result<Fixture> {
    let admin_token = api.login(&args.admin_email, &args.admin_password).await?;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut items = Vec::with_capacity(ITEMS);
    for i in 0..ITEMS {
        // Whole units: a total never ends in the simulated gateway's
        // decline digits, so every order is expected to be paid.
        let price = 100 * (5 + i64::try_from(i).unwrap_or(0) * 3);
        let answer = api
            .post_json(
                "/api/v1/admin/items",
                Some(&admin_token),
                Some(&format!("loadtest-{run}-item-{i}")),
                &json!({"name": format!("loadtest {run} #{i}"), "price": price, "stock": STOCK}),
            )
            .await;
        let id = created_id(&answer, "creating an item")?;
        items.push(Item {
            id,
            initial_stock: STOCK,
        });
    }
    let accounts = match args.scenario {
        Scenario::Browse => 0,
        Scenario::SignIns => args.users.min(SIGN_IN_ACCOUNTS),
        Scenario::Checkout | Scenario::Duplicates | Scenario::Mixed => args.users,
    };
    let password = password(&run);
    let users = create_users(api, &run, &password, accounts).await?;
    let failed_jobs_before = crate::verify::failed_jobs(api, &admin_token).await?;
    Ok(Fixture {
        run,
        password,
        admin_token,
        items,
        users,
        failed_jobs_before,
    })
}

fn password(run: &str) -> String {
    format!("loadtest-{run}-password")
}

async fn create_users(
    api: &Api,
    run: &str,
    password: &str,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    let results: Vec<anyhow::Result<User>> = stream::iter(0..count)
        .map(|i| async move {
            let email = format!("loadtest-{run}-{i}@example.com");
            let answer = api
                .post_json(
                    "/api/v1/users",
                    None,
                    Some(&format!("loadtest-{run}-user-{i}")),
                    &json!({"name": format!("Load {i}"), "email": email, "password": password}),
                )
                .await;
            let id = created_id(&answer, "registration (rate limits must be off)")?;
            let token = api.login(&email, password).await?;
            Ok(User { id, token, email })
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The id of what a create request made, or why there is none.
fn created_id(answer: &Answer, what: &str) -> anyhow::Result<Uuid> {
    answer.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{what} failed with {}: {}", answer.status, answer.body))
}
