//! Localised texts. Dispatch speaks `en` and `pt-BR`; texts live in
//! `locales/*.yml` and are compiled in.
//!
//! The locale is always passed per call: `rust_i18n::set_locale` is
//! process-global and would leak one request's language into another's.

use std::convert::Infallible;

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A language Dispatch speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
pub enum Lang {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "pt-BR")]
    PtBr,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    /// Parses one language tag; `pt`, `pt-br` and `pt-PT` all mean Portuguese
    /// (the only Portuguese we have), anything else English only if it says so.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        match primary {
            "en" => Some(Lang::En),
            "pt" => Some(Lang::PtBr),
            _ => None,
        }
    }

    /// The best supported language of an `Accept-Language` header, by quality.
    pub fn from_accept_language(header: &str) -> Option<Self> {
        let mut choices: Vec<(f32, usize, Lang)> = header
            .split(',')
            .enumerate()
            .filter_map(|(position, part)| {
                let mut pieces = part.split(';');
                let lang = Lang::from_tag(pieces.next()?)?;
                let quality = pieces
                    .find_map(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f32>().ok())
                    })
                    .unwrap_or(1.0);
                (quality > 0.0).then_some((quality, position, lang))
            })
            .collect();
        choices.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        choices.first().map(|(_, _, lang)| *lang)
    }

    /// The language of a request: `?lang=` first, then `Accept-Language`, then English.
    pub fn of_request(parts: &Parts) -> Self {
        let from_query = parts.uri.query().and_then(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "lang")
                .and_then(|(_, v)| Lang::from_tag(&v.replace("%2D", "-")))
        });
        from_query
            .or_else(|| {
                parts
                    .headers
                    .get(axum::http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::from_accept_language)
            })
            .unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of_request(parts))
    }
}

/// The text under `key` in `lang`, with `%{name}` placeholders filled in.
/// Falls back to English, then to the key itself (which a test catches).
pub fn text(lang: Lang, key: &str, params: &[(&str, String)]) -> String {
    let template = crate::_rust_i18n_try_translate(lang.as_str(), key)
        .or_else(|| crate::_rust_i18n_try_translate("en", key))
        .map(|t| t.into_owned())
        .unwrap_or_else(|| key.to_owned());
    if params.is_empty() {
        return template;
    }
    let patterns: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = params.iter().map(|(_, value)| value.clone()).collect();
    rust_i18n::replace_patterns(&template, &patterns, &values)
}

/// Whether `key` has a text in `lang` (used by tests to find missing translations).
pub fn has_text(lang: Lang, key: &str) -> bool {
    crate::_rust_i18n_try_translate(lang.as_str(), key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(
            Lang::from_accept_language("pt-BR,pt;q=0.9,en;q=0.8"),
            Some(Lang::PtBr)
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR, en;q=0.5, pt;q=0.4"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language("en;q=0, pt"), Some(Lang::PtBr));
    }

    #[test]
    fn placeholders_are_filled_in() {
        let detail = text(
            Lang::En,
            "problems.insufficient_stock.detail",
            &[("item", "Mug".into())],
        );
        assert!(detail.contains("Mug"), "{detail}");
        assert!(!detail.contains("%{"), "{detail}");
    }
}
