//! Email addresses: parsed once where they come in, then carried as an
//! [`Email`], so nothing further in can hold an address that was never
//! checked.

use validator::{ValidateEmail, ValidateLength};

/// Fewest and most characters an address may have.
const MIN_CHARS: u64 = 3;
const MAX_CHARS: u64 = 254;

/// An email address as stored: valid (see [`Email::parse`]) and lower-cased
/// so that uniqueness is case-insensitive. Case-folding the local part is
/// technically stricter than RFC 5321, but every mail provider a shop meets
/// treats it case-insensitively, and two accounts differing only by case are
/// always a mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// Why a text is not an [`Email`]; [`EmailError::code`] is the field code
/// the API reports, the same as the request validators'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address has {MIN_CHARS} to {MAX_CHARS} characters")]
    Length,
    #[error("not an email address")]
    Format,
}

impl EmailError {
    pub fn code(self) -> &'static str {
        match self {
            EmailError::Length => "length",
            EmailError::Format => "email",
        }
    }

    /// The parameters the API reports with the code (a length's bounds).
    pub fn params(self) -> &'static [(&'static str, u64)] {
        match self {
            EmailError::Length => &[("min", MIN_CHARS), ("max", MAX_CHARS)],
            EmailError::Format => &[],
        }
    }
}

/// `address` with all but the first character of its local part masked;
/// the domain stays, so the reader can tell which mailbox is meant.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

impl Email {
    /// The only way to get an `Email`.
    ///
    /// The rules are those of the request bodies that carry an address
    /// (`#[validate(email, length(min = 3, max = 254))]`), applied by the
    /// same `validator` functions, so an address the API accepted always
    /// parses: 3 to 254 characters, and an address by the HTML standard's
    /// definition (what a browser's `type="email"` field accepts; quoted
    /// local parts are not). The text is taken as given: surrounding spaces
    /// make it invalid, as they do for the validators.
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        if !text.validate_length(Some(MIN_CHARS), Some(MAX_CHARS), None) {
            return Err(EmailError::Length);
        }
        if !text.validate_email() {
            return Err(EmailError::Format);
        }
        Ok(Self(text.to_lowercase()))
    }

    /// [`Email::parse`] of an optional field (an account change that may or
    /// may not touch the address).
    pub fn parse_optional(text: Option<&str>) -> Result<Option<Self>, EmailError> {
        text.map(Self::parse).transpose()
    }

    /// The address with its local part masked (`jane@example.com` →
    /// `j***@example.com`), for texts that should not spell it out.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use validator::Validate;

    use super::*;

    #[test]
    fn an_address_is_lower_cased_so_that_addresses_compare_case_insensitively() {
        let email = Email::parse("Ana.Souza+shop@Example.COM").unwrap();
        assert_eq!(email.as_str(), "ana.souza+shop@example.com");
        assert_eq!(email, Email::parse("ana.souza+shop@example.com").unwrap());
    }

    #[test]
    fn text_that_is_not_an_address_is_refused_with_the_validators_code() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        for (text, code) in [
            ("", "length"),
            ("ab", "length"),
            (long.as_str(), "length"),
            ("no-at-sign", "email"),
            ("@example.com", "email"),
            ("ana@", "email"),
            ("ana@exa mple.com", "email"),
        ] {
            assert_eq!(Email::parse(text).unwrap_err().code(), code, "{text:?}");
        }
        assert_eq!(EmailError::Length.params(), &[("min", 3), ("max", 254)]);
    }

    #[test]
    fn surrounding_spaces_are_not_trimmed_away() {
        assert_eq!(
            Email::parse(" ana@example.com ").unwrap_err(),
            EmailError::Format
        );
        assert!(Email::parse(" ana@example.com ".trim()).is_ok());
    }

    /// The request bodies keep their `#[validate]` attributes (they report
    /// every field's problems at once); this keeps the two rule sets equal.
    #[test]
    fn parse_accepts_exactly_what_the_request_validators_accept() {
        #[derive(Validate)]
        struct Body {
            #[validate(email(code = "email"), length(min = 3, max = 254, code = "length"))]
            email: String,
        }
        let samples = [
            "ana@example.com",
            "ANA@EXAMPLE.COM",
            "a@b",
            "a@b.c",
            "x.y+z@sub.example.co.uk",
            "o'brien@example.ie",
            "joão@example.com",
            "ana@exämple.de",
            "ana@[127.0.0.1]",
            "ana@-example.com",
            "\"quoted\"@example.com",
            "ana@@example.com",
            " ana@example.com",
            "ana@example.com ",
            "",
            "a@",
            "ab",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("{}@{}.com", "a".repeat(60), "b".repeat(200)),
        ];
        for text in samples {
            let body = Body {
                email: text.to_owned(),
            };
            assert_eq!(
                Email::parse(text).is_ok(),
                body.validate().is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_masked_address_keeps_the_first_character_and_the_domain() {
        let email = Email::parse("Jane.Doe@Example.com").unwrap();
        assert_eq!(email.masked(), "j***@example.com");
        assert_eq!(mask("x@y.io"), "x***@y.io");
        assert_eq!(mask("not an address"), "***");
    }
}
