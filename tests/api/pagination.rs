//! Cursor pagination (docs/spec.md §6.3) on the item lists: complete, without
//! repeats, newest first, stable under concurrent inserts and ties in time.

use std::collections::HashSet;

use crate::helpers::{TestApp, TestUser, problem, spawn_app};
use chrono::{DateTime, Duration, Utc};
use dispatch::{
    catalog::{
        item,
        queries::{self, NewItem},
    },
    money::{Currency, Money},
    users::role::Role,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn new_item(name: String) -> NewItem {
    NewItem {
        name,
        description: String::new(),
        price: Money::new(100, Currency::parse("usd").unwrap()),
        stock: 1,
        price_payment_id: None,
    }
}

/// Inserts `count` items in one transaction, straight into the database.
async fn insert_items(app: &TestApp, count: usize) -> Vec<String> {
    let txn = app.state.db.begin_write().await.unwrap();
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let item = queries::insert(&*txn, new_item(format!("original {n}")))
            .await
            .unwrap();
        ids.push(item.id.to_string());
    }
    txn.commit().await.unwrap();
    ids
}

/// Inserts items that all carry `created_at`.
async fn insert_items_at(
    app: &TestApp,
    created_at: DateTime<Utc>,
    count: usize,
    label: &str,
) -> Vec<String> {
    let txn = app.state.db.begin_write().await.unwrap();
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let model = item::ActiveModel {
            // Random (v4) ids, so the tie-break order is unrelated to insertion order.
            id: Set(Uuid::new_v4()),
            name: Set(format!("{label} {n}")),
            name_search: Set(dispatch::db::fold_for_search(&format!("{label} {n}"))),
            description: Set(String::new()),
            price: Set(100),
            currency: Set(Currency::parse("usd").unwrap()),
            stock: Set(1),
            price_payment_id: Set(None),
            created_at: Set(created_at),
            updated_at: Set(created_at),
            deleted_at: Set(None),
        }
        .insert(&*txn)
        .await
        .unwrap();
        ids.push(model.id.to_string());
    }
    txn.commit().await.unwrap();
    ids
}

async fn page(
    app: &TestApp,
    path: &str,
    limit: u64,
    cursor: Option<&str>,
    token: Option<&str>,
) -> Value {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    let mut request = app.get(&format!("{path}?{}", query.finish()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Reads every page; `between` runs after each page except the last.
async fn read_all<F, Fut>(
    app: &TestApp,
    path: &str,
    limit: u64,
    token: Option<&str>,
    mut between: F,
) -> Vec<Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut cursor: Option<String> = None;
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let body = page(app, path, limit, cursor.as_deref(), token).await;
        pages += 1;
        assert!(pages <= 1_000, "pagination does not end");
        let page_items = body["items"].as_array().unwrap().clone();
        let has_more = body["hasMore"].as_bool().unwrap();
        if has_more {
            assert_eq!(
                page_items.len() as u64,
                limit,
                "a page before the last is full"
            );
            cursor = Some(
                body["nextCursor"]
                    .as_str()
                    .expect("nextCursor while hasMore")
                    .to_owned(),
            );
            items.extend(page_items);
            between().await;
        } else {
            assert!(
                body["nextCursor"].is_null(),
                "the last page has no nextCursor: {body}"
            );
            assert!(page_items.len() as u64 <= limit);
            items.extend(page_items);
            return items;
        }
    }
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_no_repeats(ids: &[String]) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an item was served twice");
}

fn assert_newest_first(items: &[Value]) {
    let times: Vec<DateTime<Utc>> = items
        .iter()
        .map(|i| i["createdAt"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[0] >= pair[1],
            "not newest first: {} before {}",
            pair[0],
            pair[1]
        );
    }
}

async fn create_through_api(client: &reqwest::Client, url: &str, token: &str, name: String) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"name": name, "price": 100, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn paging_through_250_items_while_others_are_added_serves_each_exactly_once() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let originals = insert_items(&app, 250).await;

    // A writer that keeps adding items through the API from the moment the
    // first page is read until the reader is done.
    let (go, stop) = (CancellationToken::new(), CancellationToken::new());
    let client = app.client.clone();
    let url = app.url("/api/v1/admin/items");
    let writer = tokio::spawn({
        let (client, url, token, go, stop) = (
            client.clone(),
            url.clone(),
            admin.access_token.clone(),
            go.clone(),
            stop.clone(),
        );
        async move {
            go.cancelled().await;
            let mut n = 0;
            while !stop.is_cancelled() {
                create_through_api(&client, &url, &token, format!("concurrent {n}")).await;
                n += 1;
            }
            n
        }
    });
    let items = read_all(&app, "/api/v1/items", 37, None, || {
        go.cancel();
        let (client, url, token) = (&client, &url, &admin.access_token);
        // And one more between every two pages, for certain.
        async move { create_through_api(client, url, token, "between pages".into()).await }
    })
    .await;
    stop.cancel();
    let concurrent = writer.await.unwrap();

    let ids = ids_of(&items);
    assert_no_repeats(&ids);
    let served: HashSet<&String> = ids.iter().collect();
    let expected: HashSet<&String> = originals.iter().collect();
    assert_eq!(
        served, expected,
        "exactly the items that existed when paging began, each once"
    );
    assert_eq!(ids.len(), 250);
    assert_newest_first(&items);

    // The writes really happened meanwhile: a fresh read sees them all.
    let pages_between = 250_usize.div_ceil(37) - 1;
    let everything = read_all(&app, "/api/v1/items", 100, None, || async {}).await;
    assert_eq!(everything.len(), 250 + pages_between + concurrent);
    assert_no_repeats(&ids_of(&everything));
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_admin_list_pages_the_same_way() {
    let app = spawn_app().await;
    let admin: TestUser = app.create_user_with_role(Role::Admin).await;
    let originals = insert_items(&app, 45).await;
    let items = read_all(
        &app,
        "/api/v1/admin/items",
        10,
        Some(&admin.access_token),
        || {
            let (app, admin) = (&app, &admin);
            async move {
                app.create_item(admin, "between pages", 1, 1).await;
            }
        },
    )
    .await;
    let ids = ids_of(&items);
    assert_no_repeats(&ids);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        originals.iter().collect::<HashSet<_>>()
    );
    assert_newest_first(&items);
    assert!(
        items.iter().all(|i| i.get("pricePaymentId").is_some()),
        "staff fields on every page"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn items_created_in_the_same_instant_are_neither_skipped_nor_repeated() {
    let app = spawn_app().await;
    let instant = dispatch::db::now() - Duration::hours(1);
    let older = insert_items_at(&app, instant - Duration::seconds(1), 5, "older").await;
    let tied = insert_items_at(&app, instant, 30, "tied").await;
    let newer = insert_items_at(&app, instant + Duration::microseconds(1), 5, "newer").await;

    for limit in [1, 7, 30, 100] {
        let items = read_all(&app, "/api/v1/items", limit, None, || async {}).await;
        let ids = ids_of(&items);
        assert_eq!(ids.len(), 40, "limit {limit}");
        assert_no_repeats(&ids);
        assert_newest_first(&items);
        let set = |list: &[String]| list.iter().cloned().collect::<HashSet<String>>();
        assert_eq!(set(&ids[..5]), set(&newer), "limit {limit}");
        assert_eq!(set(&ids[5..35]), set(&tied), "limit {limit}");
        assert_eq!(set(&ids[35..]), set(&older), "limit {limit}");
    }
}

#[tokio::test]
async fn the_default_page_has_twenty_items() {
    let app = spawn_app().await;
    insert_items(&app, 21).await;
    let response = app.get("/api/v1/items").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 20);
    assert_eq!(body["hasMore"], true);
    let last = page(&app, "/api/v1/items", 20, body["nextCursor"].as_str(), None).await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["hasMore"], false);
    assert!(last["nextCursor"].is_null());
}

#[tokio::test]
async fn an_empty_list_is_one_last_page() {
    let app = spawn_app().await;
    let body = page(&app, "/api/v1/items", 20, None, None).await;
    assert_eq!(
        body,
        json!({"items": [], "nextCursor": null, "hasMore": false})
    );
}

#[tokio::test]
async fn a_limit_outside_1_to_100_is_a_422_naming_limit() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for path in ["/api/v1/items", "/api/v1/admin/items"] {
        for limit in ["0", "101"] {
            let response = app
                .get(&format!("{path}?limit={limit}"))
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 422, "{path} limit={limit}");
            let body = problem(response).await;
            assert_eq!(body["code"], "validation_failed");
            assert!(body["errors"]["limit"].is_array(), "{body}");
        }
        for limit in ["1", "100"] {
            let response = app
                .get(&format!("{path}?limit={limit}"))
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path} limit={limit}");
        }
        for limit in ["-1", "ten", "1.5"] {
            let response = app
                .get(&format!("{path}?limit={limit}"))
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path} limit={limit}");
            let body = problem(response).await;
            assert!(body["errors"]["limit"].is_array(), "{body}");
        }
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_malformed_cursor_is_a_400_naming_cursor() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let malformed = [
        "not a cursor".to_owned(),
        "%%%".to_owned(),
        URL_SAFE_NO_PAD.encode("no separator"),
        URL_SAFE_NO_PAD.encode("12:not-a-uuid"),
        URL_SAFE_NO_PAD.encode(format!("soon:{}", Uuid::new_v4())),
        URL_SAFE_NO_PAD.encode(format!("99999999999999999999:{}", Uuid::new_v4())),
        URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x3a]),
    ];
    for path in ["/api/v1/items", "/api/v1/admin/items"] {
        for cursor in &malformed {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("cursor", cursor)
                .finish();
            let response = app
                .get(&format!("{path}?{query}"))
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path} cursor={cursor:?}");
            let body = problem(response).await;
            assert_eq!(body["code"], "invalid_request");
            assert!(body["errors"]["cursor"].is_array(), "{body}");
        }
    }
    app.drain_jobs().await;
}
