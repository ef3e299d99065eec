//! The language a user reads Dispatch in.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::i18n::Lang;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum Language {
    #[default]
    #[sea_orm(string_value = "en")]
    #[serde(rename = "en")]
    En,
    #[sea_orm(string_value = "pt-BR")]
    #[serde(rename = "pt-BR")]
    PtBr,
}

impl From<Language> for Lang {
    fn from(language: Language) -> Self {
        match language {
            Language::En => Lang::En,
            Language::PtBr => Lang::PtBr,
        }
    }
}
