//! Email addresses, normalised so that uniqueness is case-insensitive.

/// An email address as stored: trimmed and lower-cased. Case-folding the
/// local part is technically stricter than RFC 5321, but every mail provider
/// a shop meets treats it case-insensitively, and two accounts differing only
/// by case are always a mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Normalises without validating (for look-ups, e.g. login).
    pub fn normalise(text: &str) -> Self {
        Self(text.trim().to_lowercase())
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
    use super::*;

    #[test]
    fn emails_compare_case_insensitively() {
        assert_eq!(
            Email::normalise("  Ana@Example.COM "),
            Email::normalise("ana@example.com")
        );
    }
}
