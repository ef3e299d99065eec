//! Amounts of money: integer minor units with their currency.
//!
//! An amount never travels without its currency, so two amounts of
//! different currencies cannot be added by mistake: the arithmetic here
//! returns `None` on a currency mismatch as on an overflow. The database
//! keeps the two columns it always had (`total` / `amount` beside
//! `currency`); the conversion happens where rows are read and written.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217-style code: three ASCII letters, kept in lower case, which
/// is how the database stores it and how Stripe's API takes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// A currency code that is not three ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a three-letter ISO 4217 code, got {0:?}")]
pub struct InvalidCurrency(pub String);

impl Currency {
    /// Reads a code in either case; the only way to get a `Currency`.
    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_alphabetic) => Ok(Self([
                a.to_ascii_lowercase(),
                b.to_ascii_lowercase(),
                c.to_ascii_lowercase(),
            ])),
            _ => Err(InvalidCurrency(code.to_owned())),
        }
    }

    /// The lower-case code, as stored and as sent to the provider.
    pub fn as_str(&self) -> &str {
        // Three ASCII letters by construction, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The upper-case code, as people write it (`USD`).
    pub fn code(&self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Debug-printed as the string it replaced (`"usd"`), so the configuration
/// logged at start-up reads as before.
impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::str::FromStr for Currency {
    type Err = InvalidCurrency;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::parse(code)
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidCurrency;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

/// Stored as its lower-case code in the TEXT `currency` columns, so entity
/// models carry a `Currency`; a stored code that does not parse is a
/// `DbErr` when the row is read, never a panic.
impl From<Currency> for sea_orm::Value {
    fn from(currency: Currency) -> Self {
        sea_orm::Value::from(currency.as_str().to_owned())
    }
}

impl sea_orm::TryGetable for Currency {
    fn try_get_by<I: sea_orm::ColIdx>(
        res: &sea_orm::QueryResult,
        index: I,
    ) -> Result<Self, sea_orm::TryGetError> {
        let code = String::try_get_by(res, index)?;
        Self::parse(&code)
            .map_err(|err| sea_orm::TryGetError::DbErr(sea_orm::DbErr::Type(err.to_string())))
    }
}

impl sea_orm::sea_query::ValueType for Currency {
    fn try_from(value: sea_orm::Value) -> Result<Self, sea_orm::sea_query::ValueTypeErr> {
        let code = <String as sea_orm::sea_query::ValueType>::try_from(value)?;
        Self::parse(&code).map_err(|_| sea_orm::sea_query::ValueTypeErr)
    }

    fn type_name() -> String {
        "Currency".to_owned()
    }

    fn array_type() -> sea_orm::sea_query::ArrayType {
        sea_orm::sea_query::ArrayType::String
    }

    fn column_type() -> sea_orm::ColumnType {
        sea_orm::ColumnType::String(sea_orm::sea_query::StringLen::None)
    }
}

impl sea_orm::sea_query::Nullable for Currency {
    fn null() -> sea_orm::Value {
        <String as sea_orm::sea_query::Nullable>::null()
    }
}

/// An amount: minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Nothing of `currency`: the start of a sum.
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The sum; `None` if the currencies differ or the sum overflows.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Self::new(
            self.minor.checked_add(other.minor)?,
            self.currency,
        ))
    }

    /// `count` times the amount (a line's total); `None` on overflow.
    pub fn checked_mul(self, count: i64) -> Option<Money> {
        Some(Self::new(self.minor.checked_mul(count)?, self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    #[test]
    fn currency_is_three_letters_kept_lower_case() {
        assert_eq!(Currency::parse("USD").unwrap(), usd());
        assert_eq!(Currency::parse("uSd").unwrap().as_str(), "usd");
        assert_eq!(usd().code(), "USD");
        assert_eq!(usd().to_string(), "usd");
        assert_eq!(format!("{:?}", usd()), r#""usd""#);
        for bad in ["", "us", "usdd", "us1", "u d", "üsd", "€"] {
            assert_eq!(
                Currency::parse(bad),
                Err(InvalidCurrency(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn currency_serialises_as_its_lower_case_code() {
        assert_eq!(serde_json::to_value(usd()).unwrap(), "usd");
        let read: Currency = serde_json::from_value("EUR".into()).unwrap();
        assert_eq!(read.as_str(), "eur");
        assert!(serde_json::from_value::<Currency>("euro".into()).is_err());
    }

    #[test]
    fn sums_only_within_one_currency() {
        let eur = Currency::parse("eur").unwrap();
        let a = Money::new(1_250, usd());
        assert_eq!(
            a.checked_add(Money::new(50, usd())),
            Some(Money::new(1_300, usd()))
        );
        assert_eq!(a.checked_add(Money::new(50, eur)), None);
        assert_eq!(Money::zero(usd()).checked_add(a), Some(a));
    }

    #[test]
    fn overflow_is_none() {
        let max = Money::new(i64::MAX, usd());
        assert_eq!(max.checked_add(Money::new(1, usd())), None);
        assert_eq!(max.checked_mul(2), None);
        assert_eq!(
            Money::new(250, usd()).checked_mul(3),
            Some(Money::new(750, usd()))
        );
    }
}
