//! Rate limits of the endpoints that attract abuse.

use std::time::Duration;

use super::settings::{DefaultValue::Text, Reader, Setting};

/// A rate limit: at most `requests` per `period`, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub requests: u32,
    pub period: Duration,
}

impl RateQuota {
    /// Parses `N/period` (`5/min`, `100/h`, `10/30s`); `off` disables the limit.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/period or off, got {text:?}"))?;
        let requests: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number"))?;
        if requests == 0 {
            return Err("the number of requests must be at least 1".into());
        }
        let period = period.trim();
        let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(period)
        } else {
            humantime::parse_duration(&format!("1{period}"))
        }
        .map_err(|e| format!("period {period:?}: {e}"))?;
        if period.is_zero() {
            return Err("the period must be longer than zero".into());
        }
        Ok(Some(Self { requests, period }))
    }
}

const RATE_LIMIT_LOGIN: Setting = Setting {
    env: "RATE_LIMIT_LOGIN",
    default: Text("5/min"),
    doc: "password checks per account and client address (reset by a success): N/period or off",
};
const RATE_LIMIT_REGISTER: Setting = Setting {
    env: "RATE_LIMIT_REGISTER",
    default: Text("10/min"),
    doc: "registrations per IP and per account: N/period or off",
};
const RATE_LIMIT_ORDERS: Setting = Setting {
    env: "RATE_LIMIT_ORDERS",
    default: Text("30/min"),
    doc: "orders placed per IP and per account: N/period or off",
};

pub(super) const SETTINGS: &[&Setting] =
    &[&RATE_LIMIT_LOGIN, &RATE_LIMIT_REGISTER, &RATE_LIMIT_ORDERS];

pub(super) struct Limits {
    pub rate_limit_login: Option<RateQuota>,
    pub rate_limit_register: Option<RateQuota>,
    pub rate_limit_orders: Option<RateQuota>,
}

pub(super) fn read(r: &mut Reader) -> Option<Limits> {
    let rate_limit_login = r.parse(&RATE_LIMIT_LOGIN, RateQuota::parse);
    let rate_limit_register = r.parse(&RATE_LIMIT_REGISTER, RateQuota::parse);
    let rate_limit_orders = r.parse(&RATE_LIMIT_ORDERS, RateQuota::parse);
    Some(Limits {
        rate_limit_login: rate_limit_login?,
        rate_limit_register: rate_limit_register?,
        rate_limit_orders: rate_limit_orders?,
    })
}
