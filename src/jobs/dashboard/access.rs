//! Who may use the dashboard, and how a POST proves it came from a page of
//! ours.
//!
//! Two ways in (docs/spec.md §5.5):
//! - **HTTP Basic** with the dashboard credentials (`ADMIN_USERNAME` /
//!   `ADMIN_PASSWORD`), compared in constant time, every attempt counted by
//!   the sign-in throttle (`auth::throttle`) as one account, so the
//!   credentials cannot be guessed faster than any password;
//! - **staff login** at `/admin/queues/login`: an admin's email and password
//!   start an ordinary session (a row in `sessions`) and its access token is
//!   kept in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//!   `/admin/queues`. Every request checks the token *and* the session, like
//!   [`crate::auth::extract::AuthUser`], so sign-out, revocation and role
//!   changes apply at once.
//!
//! CSRF: every form carries `csrf = HMAC-SHA256(csrf key, identity)` where
//! the identity is the session id (or the Basic username), checked in
//! constant time; and a POST whose `Sec-Fetch-Site` or `Origin` says it came
//! from another site is refused before any handler runs. The CSRF key is
//! derived from `JWT_ACCESS_SECRET` with HKDF (see [`csrf_key`]), never the
//! secret itself.

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::pages;
use crate::{
    auth::throttle::Account, http::extract::ClientIp, rate_limit::RetryAfter, state::AppState,
};

/// The cookie holding a staff member's access token.
pub const COOKIE: &str = "dispatch_dashboard";
/// Where the dashboard is mounted. The templates in `templates/dashboard/`
/// spell it out in their links too.
pub const BASE: &str = "/admin/queues";
const REALM: &str = "Basic realm=\"Dispatch queues\", charset=\"UTF-8\"";

/// Someone allowed to operate the queues.
#[derive(Debug, Clone)]
pub enum Operator {
    /// The dashboard Basic credentials.
    Basic { username: String },
    /// A signed-in admin (staff login).
    Staff { user_id: Uuid, session_id: Uuid },
}

impl Operator {
    /// The actor recorded in the log with every action.
    pub fn actor(&self) -> String {
        match self {
            Operator::Basic { username } => format!("dashboard:basic:{username}"),
            Operator::Staff { user_id, .. } => format!("user:{user_id}"),
        }
    }

    /// What the CSRF token is bound to: one session, or the Basic account.
    fn identity(&self) -> String {
        match self {
            Operator::Basic { username } => format!("basic:{username}"),
            Operator::Staff { session_id, .. } => format!("session:{session_id}"),
        }
    }

    /// The token every form of this operator carries.
    pub fn csrf_token(&self, state: &AppState) -> String {
        csrf_mac(state, &self.identity())
            .map(|mac| hex::encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Whether `presented` is this operator's token (constant time).
    pub fn csrf_matches(&self, state: &AppState, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented.trim()) else {
            return false;
        };
        csrf_mac(state, &self.identity()).is_some_and(|mac| mac.verify_slice(&bytes).is_ok())
    }

    pub fn is_staff(&self) -> bool {
        matches!(self, Operator::Staff { .. })
    }
}

/// The info label that makes the derived key the CSRF key and nothing else.
/// Changing it changes every token (open forms then need a reload).
const CSRF_KEY_INFO: &[u8] = b"dispatch dashboard csrf v1";

/// The key the CSRF tokens are signed with: HKDF-SHA256 of
/// `JWT_ACCESS_SECRET` with its own info label.
///
/// Why not the JWT secret itself: one key should have one use, so a token of
/// one kind can never be made to pass as the other and a weakness found in
/// one scheme does not reach the other. Why derived rather than a secret of
/// its own: a derived key needs no new setting to configure, store and
/// rotate, rotating `JWT_ACCESS_SECRET` (which already signs everyone out)
/// renews it too, and HKDF's output reveals nothing about the secret.
/// `None` only if HKDF refused the output length, which 32 bytes never is.
fn csrf_key(jwt_access_secret: &str) -> Option<[u8; 32]> {
    let mut key = [0_u8; 32];
    Hkdf::<Sha256>::new(None, jwt_access_secret.as_bytes())
        .expand(CSRF_KEY_INFO, &mut key)
        .ok()?;
    Some(key)
}

/// HMAC takes keys of any length, so this is `None` only in theory (and
/// then no token matches).
fn csrf_mac(state: &AppState, identity: &str) -> Option<Hmac<Sha256>> {
    let key = csrf_key(state.config.jwt_access_secret.expose_secret())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(identity.as_bytes());
    Some(mac)
}

/// Why a request was not let in.
#[derive(Debug)]
pub enum Denied {
    /// No credentials: browsers go to the login page.
    Anonymous {
        method: Method,
    },
    /// Credentials that do not hold (wrong password, revoked session, not an admin).
    Refused,
    /// Too many Basic attempts (sign-in throttle).
    Throttled(RetryAfter),
    Unavailable,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let basic = HeaderValue::from_static(REALM);
        match self {
            Denied::Anonymous { method } if method == Method::GET || method == Method::HEAD => {
                let mut response = pages::redirect(&format!("{BASE}/login"));
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, basic);
                response
            }
            Denied::Anonymous { .. } | Denied::Refused => {
                let mut response = pages::message(
                    StatusCode::UNAUTHORIZED,
                    "Sign-in required",
                    "Sign in with an admin account or the dashboard credentials.",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, basic);
                response
            }
            Denied::Throttled(RetryAfter(wait)) => {
                let seconds = crate::http::error::retry_after_seconds(wait);
                let mut response = pages::message(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    "Too many sign-in attempts; wait a minute and try again.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
            Denied::Unavailable => pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The dashboard cannot check your access right now; try again.",
            ),
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        if let Some(header) = parts.headers.get(header::AUTHORIZATION).cloned() {
            let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
            return basic(&header, ip, state).await;
        }
        match cookie(&parts.headers, COOKIE) {
            Some(token) => staff(token, state).await,
            None => Err(Denied::Anonymous {
                method: parts.method.clone(),
            }),
        }
    }
}

/// Checks Basic credentials through the sign-in throttle: a malformed header
/// counts as a wrong password.
async fn basic(
    header: &HeaderValue,
    ip: Option<std::net::IpAddr>,
    state: &AppState,
) -> Result<Operator, Denied> {
    let pending = state
        .sign_in_throttle
        .begin(Account::DashboardBasic, ip)
        .await
        .map_err(Denied::Throttled)?;
    match basic_credentials(header, state) {
        Some(operator) => {
            pending.succeeded().await;
            Ok(operator)
        }
        None => {
            pending.failed().await;
            Err(Denied::Refused)
        }
    }
}

fn basic_credentials(header: &HeaderValue, state: &AppState) -> Option<Operator> {
    let encoded = header.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    let expected_password = state.config.admin_password.expose_secret();
    if expected_password.is_empty() {
        return None;
    }
    // Compare digests so neither value's length leaks through timing.
    let digest = |s: &str| Sha256::digest(s.as_bytes());
    let user_ok = digest(username).ct_eq(&digest(&state.config.admin_username));
    let password_ok = digest(password).ct_eq(&digest(expected_password));
    bool::from(user_ok & password_ok).then(|| Operator::Basic {
        username: username.to_owned(),
    })
}

async fn staff(token: &str, state: &AppState) -> Result<Operator, Denied> {
    let claims = state
        .tokens
        .verify_access(token)
        .map_err(|_| Denied::Refused)?;
    let session = state
        .sessions
        .current(&state.db, claims.sub, claims.sid)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "dashboard: loading the session failed");
            Denied::Unavailable
        })?
        .filter(|s| s.is_live_admin() && s.user_id == claims.sub)
        .ok_or(Denied::Refused)?;
    Ok(Operator::Staff {
        user_id: session.user_id,
        session_id: claims.sid,
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for the staff session (an empty value with `Max-Age=0` clears it).
pub fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path={BASE}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Refuses state-changing requests another site caused a browser to send.
/// Browsers send `Sec-Fetch-Site` (and `Origin` on POSTs); a request with
/// neither is not from a browser page (curl, tests), and still needs its
/// CSRF token.
pub async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && is_cross_site(request.headers())
    {
        tracing::warn!(path = %request.uri().path(), "dashboard: cross-site request refused");
        return pages::message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This request came from another site.",
        );
    }
    next.run(request).await
}

/// `Sec-Fetch-Site` decides when present (browsers set it and pages cannot):
/// our pages send `Referrer-Policy: no-referrer`, under which Chromium sends
/// `Origin: null` on same-origin form posts, so `Origin` is only consulted
/// when `Sec-Fetch-Site` is absent (older browsers).
fn is_cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => false,
        Some(Ok(origin)) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            host.is_empty() || authority != Some(host)
        }
        Some(Err(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_origin_and_non_browser_posts_pass_and_cross_site_ones_do_not() {
        assert!(!is_cross_site(&headers(&[])));
        assert!(!is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
        assert!(!is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
    }

    #[test]
    fn the_csrf_key_is_derived_from_the_jwt_secret_and_is_not_the_secret() {
        let secret = "a-jwt-access-secret-of-enough-length-for-hs256";
        let key = csrf_key(secret).unwrap();
        assert_eq!(
            csrf_key(secret),
            Some(key),
            "deterministic across processes"
        );
        assert_ne!(&key[..], secret.as_bytes().get(..32).unwrap());
        assert_ne!(csrf_key("another-secret"), Some(key));
        // A different label gives an unrelated key: the label is what binds it to CSRF.
        let mut other = [0_u8; 32];
        Hkdf::<Sha256>::new(None, secret.as_bytes())
            .expand(b"dispatch something else", &mut other)
            .unwrap();
        assert_ne!(other, key);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; dispatch_dashboard=tok; b=2")]);
        assert_eq!(cookie(&map, COOKIE), Some("tok"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1")]), COOKIE), None);
    }
}
