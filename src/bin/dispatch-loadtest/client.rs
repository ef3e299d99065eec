//! A thin HTTP client for the API: every call returns its status, its
//! latency and its JSON body (if any), never panics.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// One answered (or failed) request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 0 when the request failed at the transport level.
    pub status: u16,
    pub latency: Duration,
    pub body: Value,
    pub replayed: bool,
    /// The answer carried a `Retry-After` header.
    pub retry_after: bool,
}

impl Api {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let replayed = response.headers().contains_key("idempotent-replayed");
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Answer {
                    status,
                    latency: started.elapsed(),
                    body,
                    replayed,
                    retry_after,
                }
            }
            Err(_) => Answer {
                status: 0,
                latency: started.elapsed(),
                body: Value::Null,
                replayed: false,
                retry_after: false,
            },
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> Answer {
        let mut request = self.request(Method::POST, path).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// Signs in; the access token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .post_json(
                "/api/v1/auth/login",
                None,
                None,
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        answer.body["accessToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "login of {email} failed with {}: {}",
                    answer.status,
                    answer.body
                )
            })
    }
}
