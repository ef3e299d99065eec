//! Email addresses: parsed once where they come in, then carried as an
//! [`Email`], so nothing further in can hold an address that was never
//! checked or that is spelled differently from the stored one.
//!
//! The request bodies check their `email` field with [`validate`], which is
//! [`Email::parse`] reporting through `validator`, so a body's problems are
//! still reported all at once and there is one rule set.

use std::borrow::Cow;

use icu_properties::{props::Script, script::ScriptWithExtensions};
use validator::{ValidateEmail, ValidationError};

/// Fewest and most characters an address may have, counted on its
/// normalised form with the domain in ASCII (what SMTP carries; RFC 5321's
/// path limit leaves 254 for the address).
const MIN_CHARS: u64 = 3;
const MAX_CHARS: u64 = 254;

/// Input longer than this is refused before any normalisation work: no
/// normalisation of a valid address is this long.
const MAX_INPUT_BYTES: usize = 1024;

/// An email address as stored: valid (see [`Email::parse`]), its local part
/// lower-cased and its domain IDNA-normalised, so that two spellings of one
/// mailbox are one account. Case-folding the local part is technically
/// stricter than RFC 5321, but every mail provider a shop meets treats it
/// case-insensitively, and two accounts differing only by case are always a
/// mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// Why a text is not an [`Email`]; [`EmailError::code`] is the field code
/// the API reports (a key of `validation` in `locales/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address has {MIN_CHARS} to {MAX_CHARS} characters")]
    Length,
    #[error("not an email address")]
    Format,
    /// A label of the domain mixes writing systems (Latin `a` with Cyrillic
    /// `а`): the classic look-alike of another domain.
    #[error("a part of the domain mixes writing systems")]
    MixedScriptDomain,
}

impl EmailError {
    pub fn code(self) -> &'static str {
        match self {
            EmailError::Length => "length",
            EmailError::Format => "email",
            EmailError::MixedScriptDomain => "email_mixed_script",
        }
    }

    /// The parameters the API reports with the code (a length's bounds).
    pub fn params(self) -> &'static [(&'static str, u64)] {
        match self {
            EmailError::Length => &[("min", MIN_CHARS), ("max", MAX_CHARS)],
            EmailError::Format | EmailError::MixedScriptDomain => &[],
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
    /// 1. Syntax: an address by the HTML standard's definition (what a
    ///    browser's `type="email"` field accepts; quoted local parts are
    ///    not), checked by `validator`. The text is taken as given:
    ///    surrounding spaces make it invalid.
    /// 2. The domain goes through IDNA (UTS #46, the `idna` crate, with
    ///    STD3 rules: letters, digits and hyphens per label): upper case,
    ///    compatibility and Punycode spellings of one domain become one.
    ///    Address literals (`[127.0.0.1]`) are refused: no shopper has one.
    ///    It is stored in Unicode, readable, since the round trip makes that
    ///    form as canonical as the ASCII one.
    /// 3. Each domain label must be written in one script (UTS #39's
    ///    resolved script set, with Han allowed beside Japanese kana, Hangul
    ///    or Bopomofo): `раypal.com` with a Cyrillic `р` and `а` is refused.
    /// 4. Length: 3 to 254 characters, counted with the domain in ASCII.
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        if text.len() > MAX_INPUT_BYTES {
            return Err(EmailError::Length);
        }
        // `validator` refuses more than 254 characters as typed too; say why.
        if !(MIN_CHARS as usize..=MAX_CHARS as usize).contains(&text.chars().count()) {
            return Err(EmailError::Length);
        }
        if !text.validate_email() {
            return Err(EmailError::Format);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(EmailError::Format)?;
        let ascii_domain = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::Format)?;
        let (unicode_domain, decoded) = idna::domain_to_unicode(&ascii_domain);
        decoded.map_err(|_| EmailError::Format)?;
        if !unicode_domain.split('.').all(is_single_script) {
            return Err(EmailError::MixedScriptDomain);
        }
        let local = local.to_lowercase();
        let length = local.chars().count() + 1 + ascii_domain.len();
        if !(MIN_CHARS as usize..=MAX_CHARS as usize).contains(&length) {
            return Err(EmailError::Length);
        }
        Ok(Self(format!("{local}@{unicode_domain}")))
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

/// [`Email::parse`] as a `validator` custom function, for request bodies
/// (`#[validate(custom(function = "validate_email"))]`).
pub fn validate_email(text: &str) -> Result<(), ValidationError> {
    Email::parse(text).map(|_| ()).map_err(|e| {
        let mut error = ValidationError::new(e.code());
        for (name, value) in e.params() {
            error.add_param(Cow::Borrowed(name), value);
        }
        error
    })
}

/// What a character's scripts allow the rest of its label to be written in
/// (UTS #39's augmented script sets: Han text may be Japanese, Korean or
/// Chinese with Bopomofo, so it is compatible with kana, Hangul and Bopomofo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Script(Script),
    Japanese,
    Korean,
    ChineseWithBopomofo,
}

fn augmented(script: Script, into: &mut Vec<Writing>) {
    into.push(Writing::Script(script));
    if script == Script::Han {
        into.extend([
            Writing::Japanese,
            Writing::Korean,
            Writing::ChineseWithBopomofo,
        ]);
    } else if script == Script::Hiragana || script == Script::Katakana {
        into.push(Writing::Japanese);
    } else if script == Script::Hangul {
        into.push(Writing::Korean);
    } else if script == Script::Bopomofo {
        into.push(Writing::ChineseWithBopomofo);
    }
}

/// Whether one label's characters share a script (UTS #39 "single script"):
/// the intersection of their script extensions is not empty. Common and
/// Inherited characters (digits, hyphen, combining marks) go with any script.
fn is_single_script(label: &str) -> bool {
    let scripts = ScriptWithExtensions::new();
    let mut resolved: Option<Vec<Writing>> = None;
    let mut own = Vec::new();
    for ch in label.chars() {
        own.clear();
        for script in scripts.get_script_extensions_val(ch).iter() {
            if script == Script::Common || script == Script::Inherited {
                own.clear();
                break;
            }
            augmented(script, &mut own);
        }
        if own.is_empty() {
            continue;
        }
        let narrowed = match resolved.take() {
            None => own.clone(),
            Some(previous) => previous.into_iter().filter(|w| own.contains(w)).collect(),
        };
        if narrowed.is_empty() {
            return false;
        }
        resolved = Some(narrowed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_lower_cased_so_that_addresses_compare_case_insensitively() {
        let email = Email::parse("Ana.Souza+shop@Example.COM").unwrap();
        assert_eq!(email.as_str(), "ana.souza+shop@example.com");
        assert_eq!(email, Email::parse("ana.souza+shop@example.com").unwrap());
    }

    #[test]
    fn an_international_domain_is_one_address_however_it_is_spelled() {
        let unicode = Email::parse("ana@EXÄMPLE.de").unwrap();
        assert_eq!(unicode.as_str(), "ana@exämple.de");
        // Its Punycode spelling, and the decomposed "a" + combining diaeresis.
        assert_eq!(Email::parse("ana@xn--exmple-cua.de").unwrap(), unicode);
        assert_eq!(Email::parse("ana@exa\u{308}mple.de").unwrap(), unicode);
        // Full-width letters are compatibility forms of ASCII ones.
        assert_eq!(
            Email::parse("ana@ｅｘａｍｐｌｅ.com").unwrap().as_str(),
            "ana@example.com"
        );
    }

    #[test]
    fn a_domain_label_mixing_scripts_is_refused() {
        for text in [
            "ana@\u{440}\u{430}ypal.com", // Cyrillic р and а, then Latin
            "ana@exаmple.com",            // one Cyrillic а
            "ana@xn--exmple-4nf.com",     // the same, spelled in Punycode
            "ana@gοogle.com",             // Greek omicron
        ] {
            assert_eq!(
                Email::parse(text),
                Err(EmailError::MixedScriptDomain),
                "{text:?}"
            );
        }
    }

    #[test]
    fn single_script_domains_in_any_script_are_accepted() {
        for text in [
            "ana@пример.рф",     // Cyrillic throughout
            "ana@例え.jp",       // Han with Hiragana (Japanese)
            "ana@한국어.kr",     // Hangul
            "ana@παράδειγμα.gr", // Greek
            "ana@shop-24.com",   // digits and hyphens go with anything
            "ana@пример.com",    // scripts may differ between labels
        ] {
            assert!(Email::parse(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn text_that_is_not_an_address_is_refused_with_its_code() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        let huge = format!("{}@example.com", "a".repeat(2000));
        for (text, code) in [
            ("", "length"),
            ("ab", "length"),
            (long.as_str(), "length"),
            (huge.as_str(), "length"),
            ("no-at-sign", "email"),
            ("@example.com", "email"),
            ("ana@", "email"),
            ("ana@exa mple.com", "email"),
            ("ana@[127.0.0.1]", "email"),
            ("ana@exa_mple.com", "email"),
            ("\"quoted\"@example.com", "email"),
        ] {
            assert_eq!(Email::parse(text).unwrap_err().code(), code, "{text:?}");
        }
        assert_eq!(EmailError::Length.params(), &[("min", 3), ("max", 254)]);
    }

    #[test]
    fn the_length_is_counted_after_normalisation_with_the_domain_in_ascii() {
        let label = "a".repeat(63);
        let domain = format!("{label}.{label}.{label}.com"); // 195 characters
        let local = "x".repeat(254 - 1 - domain.len());
        assert!(Email::parse(&format!("{local}@{domain}")).is_ok());
        assert_eq!(
            Email::parse(&format!("{local}x@{domain}")),
            Err(EmailError::Length)
        );
        // 250 characters as typed, but its domain is longer in Punycode.
        let umlauts = format!("{}.{label}.{label}.{label}.com", "ä".repeat(20));
        let local = "x".repeat(250 - 1 - umlauts.chars().count());
        let typed = format!("{local}@{umlauts}");
        assert_eq!(typed.chars().count(), 250);
        assert_eq!(Email::parse(&typed), Err(EmailError::Length));
    }

    #[test]
    fn surrounding_spaces_are_not_trimmed_away() {
        assert_eq!(Email::parse(" ana@example.com "), Err(EmailError::Format));
        assert!(Email::parse(" ana@example.com ".trim()).is_ok());
    }

    #[test]
    fn the_request_validator_reports_the_parse_error_with_its_code_and_bounds() {
        assert!(validate_email("ana@example.com").is_ok());
        let error = validate_email("ana@exаmple.com").unwrap_err();
        assert_eq!(error.code, "email_mixed_script");
        let error = validate_email("ab").unwrap_err();
        assert_eq!(error.code, "length");
        assert_eq!(error.params["min"], 3);
        assert_eq!(error.params["max"], 254);
    }

    #[test]
    fn a_masked_address_keeps_the_first_character_and_the_domain() {
        let email = Email::parse("Jane.Doe@Example.com").unwrap();
        assert_eq!(email.masked(), "j***@example.com");
        assert_eq!(mask("x@y.io"), "x***@y.io");
        assert_eq!(mask("not an address"), "***");
    }
}
