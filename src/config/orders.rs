//! Checkout: the shop's currency and the deadlines of an order's payment.

use std::time::Duration;

use crate::money::Currency;

use super::settings::{DefaultValue::Text, Reader, Setting};

const SHOP_CURRENCY: Setting = Setting {
    env: "SHOP_CURRENCY",
    default: Text("usd"),
    doc: "ISO 4217 currency of prices and orders",
};
const ORDER_PAYMENT_TIMEOUT: Setting = Setting {
    env: "ORDER_PAYMENT_TIMEOUT",
    default: Text("30m"),
    doc: "unpaid orders expire after this",
};
const ORDER_RECOVERY_AFTER: Setting = Setting {
    env: "ORDER_RECOVERY_AFTER",
    default: Text("5m"),
    doc: "a checkout whose PaymentIntent never got created is undone after this",
};
const PAYMENT_RECONCILE_AFTER: Setting = Setting {
    env: "PAYMENT_RECONCILE_AFTER",
    default: Text("5m"),
    doc: "PENDING orders older than this are checked with the provider",
};
/// 30 s, the default `REQUEST_TIMEOUT`: no live request runs longer (the
/// timeout drops it, and dropping a claim frees its key), so after that the
/// holder is dead and a retry may take over. Shorter would let a retry take
/// over a request still running: still safe (completion is fenced by the
/// lease token, the checkout's provider call by its idempotency key) but
/// wasted work. Longer only keeps clients waiting after a crash.
const IDEMPOTENCY_LEASE: Setting = Setting {
    env: "IDEMPOTENCY_LEASE",
    default: Text("30s"),
    doc: "an in-flight Idempotency-Key belongs to its request this long",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &SHOP_CURRENCY,
    &ORDER_PAYMENT_TIMEOUT,
    &ORDER_RECOVERY_AFTER,
    &PAYMENT_RECONCILE_AFTER,
    &IDEMPOTENCY_LEASE,
];

pub(super) struct Orders {
    pub shop_currency: Currency,
    pub order_payment_timeout: Duration,
    pub order_recovery_after: Duration,
    pub payment_reconcile_after: Duration,
    pub idempotency_lease: Duration,
}

pub(super) fn read(r: &mut Reader) -> Option<Orders> {
    let shop_currency = r.parse(&SHOP_CURRENCY, |v| {
        Currency::parse(v).map_err(|e| e.to_string())
    });
    let order_payment_timeout = r.duration(&ORDER_PAYMENT_TIMEOUT);
    let order_recovery_after = r.duration(&ORDER_RECOVERY_AFTER);
    let payment_reconcile_after = r.duration(&PAYMENT_RECONCILE_AFTER);
    let idempotency_lease = r.duration(&IDEMPOTENCY_LEASE);
    Some(Orders {
        shop_currency: shop_currency?,
        order_payment_timeout: order_payment_timeout?,
        order_recovery_after: order_recovery_after?,
        payment_reconcile_after: payment_reconcile_after?,
        idempotency_lease: idempotency_lease?,
    })
}
