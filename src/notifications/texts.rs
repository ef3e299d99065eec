//! The words of a notification, rendered at read time in the reader's
//! language from `notifications.<event>.title/message` in `locales/*.yml`,
//! with the order id, the total formatted for the language and currency,
//! and the status's name filled in.
//!
//! Money is formatted here, about forty lines, rather than with a crate:
//! the candidates (`rusty-money`, `iso_currency`) format per currency, not
//! per reader (`$1,234.50` for English, `R$ 1.234,50` for Portuguese), and
//! we need only the separators of two languages and a symbol table.

use super::event::{EmailChange, NotificationEvent, OrderSummary, SignIn};
use crate::{
    i18n::{self, Lang},
    money::Money,
};

/// Title and message of `event`, in `lang`.
pub fn render(event: &NotificationEvent, lang: Lang) -> (String, String) {
    let (name, params) = match event {
        NotificationEvent::SignedIn(sign_in) => ("auth.login", sign_in_params(sign_in, lang)),
        NotificationEvent::EmailChanged(change) => {
            ("account.email_changed", email_change_params(change))
        }
        NotificationEvent::OrderCreated(order) => ("order.created", order_params(order, lang)),
        NotificationEvent::OrderPaid(order) => ("order.paid", order_params(order, lang)),
        NotificationEvent::OrderProcessed(order) => ("order.processed", order_params(order, lang)),
        NotificationEvent::OrderShipped(order) => ("order.shipped", order_params(order, lang)),
        NotificationEvent::OrderDelivered(order) => ("order.delivered", order_params(order, lang)),
        NotificationEvent::OrderCanceled(order) => ("order.canceled", order_params(order, lang)),
        NotificationEvent::OrderRefunded(order) => ("order.refunded", order_params(order, lang)),
        NotificationEvent::OrderFailed(order) => ("order.failed", order_params(order, lang)),
        NotificationEvent::OrderStatusChanged(order) => {
            ("order.status_changed", order_params(order, lang))
        }
    };
    let text = |field: &str| {
        let key = format!("notifications.{name}.{field}");
        let rendered = i18n::text(lang, &key, &params);
        // A text missing from a locale renders its key back.
        (rendered != key).then_some(rendered)
    };
    match (text("title"), text("message")) {
        (Some(title), Some(message)) => (title, message),
        _ => generic(name, lang),
    }
}

/// The text of an event this version cannot read (unknown, or a stored
/// row whose data does not fit its event).
pub fn generic(event: &str, lang: Lang) -> (String, String) {
    (
        i18n::text(lang, "notifications.generic.title", &[]),
        i18n::text(
            lang,
            "notifications.generic.message",
            &[("event", event.to_owned())],
        ),
    )
}

fn order_params(order: &OrderSummary, lang: Lang) -> Vec<(&'static str, String)> {
    vec![
        ("order", order.order_id.to_string()),
        ("total", format_money(order.total, lang)),
        ("status", status_name(&order.status, lang)),
    ]
}

fn sign_in_params(sign_in: &SignIn, lang: Lang) -> Vec<(&'static str, String)> {
    // A sign-in may come without a user agent or address: say so rather
    // than leave a placeholder.
    let ip = sign_in
        .ip
        .clone()
        .unwrap_or_else(|| i18n::text(lang, "notifications.unknown_address", &[]));
    let device = sign_in
        .user_agent
        .clone()
        .unwrap_or_else(|| i18n::text(lang, "notifications.unknown_device", &[]));
    vec![("ip", ip), ("device", device)]
}

fn email_change_params(change: &EmailChange) -> Vec<(&'static str, String)> {
    vec![
        ("previous", change.previous.clone()),
        ("new", change.new.clone()),
    ]
}

/// A status as readers call it (`SHIPPED` → "shipped" / "enviado").
pub fn status_name(status: &str, lang: Lang) -> String {
    let key = format!("order_status.{status}");
    let name = i18n::text(lang, &key, &[]);
    if name == key { status.to_owned() } else { name }
}

/// Digits after the decimal point of a currency (ISO 4217 minor units).
fn exponent(currency: &str) -> u32 {
    match currency {
        "jpy" | "krw" | "clp" | "vnd" | "isk" | "ugx" | "xaf" | "xof" | "pyg" => 0,
        "bhd" | "kwd" | "omr" | "jod" | "tnd" => 3,
        _ => 2,
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "usd" => "$",
        "brl" => "R$",
        "eur" => "€",
        "gbp" => "£",
        "jpy" => "¥",
        _ => return None,
    })
}

/// `money` as `lang` writes it.
pub fn format_money(money: Money, lang: Lang) -> String {
    let currency = money.currency.as_str();
    let minor = money.minor;
    let exponent = exponent(currency);
    let scale = 10_i64.pow(exponent);
    let negative = minor < 0;
    let minor = minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    let (units, cents) = (minor / scale, minor % scale);
    let (group, decimal) = match lang {
        Lang::En => (',', '.'),
        Lang::PtBr => ('.', ','),
    };
    let digits = units.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(group);
        }
        grouped.push(c);
    }
    if exponent > 0 {
        grouped.push(decimal);
        grouped.push_str(&format!("{cents:0width$}", width = exponent as usize));
    }
    let sign = if negative { "-" } else { "" };
    match (symbol(currency), lang) {
        (Some(symbol), Lang::En) => format!("{sign}{symbol}{grouped}"),
        (Some(symbol), Lang::PtBr) => format!("{sign}{symbol} {grouped}"),
        (None, _) => format!("{sign}{} {grouped}", money.currency.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn a_sign_in_without_device_or_address_says_so() {
        let sign_in = SignIn {
            session_id: uuid::Uuid::nil(),
            ip: None,
            user_agent: None,
        };
        let (_, message) = render(&NotificationEvent::SignedIn(sign_in), Lang::En);
        assert!(!message.contains("%{"), "{message}");
        assert!(message.contains("an unknown device"), "{message}");
    }

    fn money(minor: i64, currency: &str) -> Money {
        Money::new(minor, Currency::parse(currency).unwrap())
    }

    #[test]
    fn money_is_written_as_each_language_writes_it() {
        assert_eq!(format_money(money(123_450, "usd"), Lang::En), "$1,234.50");
        assert_eq!(
            format_money(money(123_450, "brl"), Lang::PtBr),
            "R$ 1.234,50"
        );
        assert_eq!(
            format_money(money(123_450, "usd"), Lang::PtBr),
            "$ 1.234,50"
        );
        assert_eq!(format_money(money(5, "usd"), Lang::En), "$0.05");
        assert_eq!(
            format_money(money(100_000_000, "eur"), Lang::En),
            "€1,000,000.00"
        );
        assert_eq!(format_money(money(1_500, "jpy"), Lang::En), "¥1,500");
        assert_eq!(format_money(money(1_234, "chf"), Lang::En), "CHF 12.34");
        assert_eq!(format_money(money(-250, "usd"), Lang::En), "-$2.50");
    }
}
