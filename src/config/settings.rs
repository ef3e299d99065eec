//! The settings as data, where they come from, and the reader that turns
//! their text into typed values while collecting every problem.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use secrecy::SecretString;

/// One environment variable Dispatch reads. Each section declares its own;
/// [`super::settings`] lists them all, and the README's configuration table is
/// checked against that list by a test.
#[derive(Debug)]
pub struct Setting {
    /// The variable's name; `dispatch.toml` uses the same name in lower case.
    pub env: &'static str,
    pub default: DefaultValue,
    /// One line for people; the README says more.
    pub doc: &'static str,
}

/// What a setting is when nobody sets it.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// This text, parsed like a value that was set.
    Text(&'static str),
    /// Absent: the feature is off or something else decides.
    Unset,
    /// Depends on other settings (described here for people).
    Derived(&'static str),
}

impl DefaultValue {
    /// The text of a [`DefaultValue::Text`]; empty for the others, whose
    /// sections decide what absence means.
    fn text(self) -> &'static str {
        match self {
            Self::Text(text) => text,
            Self::Unset | Self::Derived(_) => "",
        }
    }
}

/// Reads the raw text of the settings and records every problem.
pub(super) struct Reader {
    raw: BTreeMap<&'static str, String>,
    problems: Vec<String>,
    /// The settings the sections asked for; a test checks it equals
    /// [`super::settings`], so the list cannot miss one the code reads.
    consulted: BTreeSet<&'static str>,
}

impl Reader {
    /// `raw` is keyed by the settings' names (upper case); keys of other
    /// settings are ignored.
    pub(super) fn new(raw: BTreeMap<&'static str, String>) -> Self {
        Self {
            raw,
            problems: Vec::new(),
            consulted: BTreeSet::new(),
        }
    }

    pub(super) fn into_problems(self) -> Vec<String> {
        self.problems
    }

    #[cfg(test)]
    pub(super) fn consulted(&self) -> &BTreeSet<&'static str> {
        &self.consulted
    }

    /// Whether `setting` was given at all (for retired variables, which are
    /// not read, only refused).
    pub(super) fn is_given(&self, setting: &Setting) -> bool {
        self.raw.contains_key(setting.env)
    }

    pub(super) fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    /// The setting's trimmed text, if it was given and is not empty.
    pub(super) fn text(&mut self, setting: &'static Setting) -> Option<String> {
        self.consulted.insert(setting.env);
        self.raw
            .get(setting.env)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// The setting's text, or its [`DefaultValue::Text`] (empty otherwise).
    pub(super) fn text_or_default(&mut self, setting: &'static Setting) -> String {
        self.text(setting)
            .unwrap_or_else(|| setting.default.text().to_owned())
    }

    /// Parses the setting's text, or `default` when it was not given.
    pub(super) fn parse_or<T>(
        &mut self,
        setting: &'static Setting,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(setting).unwrap_or_else(|| default.to_owned());
        match parse(&text) {
            Ok(value) => Some(value),
            Err(why) => {
                self.problems.push(format!("{}: {why}", setting.env));
                None
            }
        }
    }

    /// Parses the setting's text, or its [`DefaultValue::Text`].
    pub(super) fn parse<T>(
        &mut self,
        setting: &'static Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parse_or(setting, setting.default.text(), parse)
    }

    /// Parses the setting's text if it was given: `Some(None)` when it was
    /// not, `None` when it was but did not parse.
    pub(super) fn parse_optional<T>(
        &mut self,
        setting: &'static Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.text(setting) {
            Some(text) => self.parse_or(setting, "", |_| parse(&text)).map(Some),
            None => Some(None),
        }
    }

    pub(super) fn duration(&mut self, setting: &'static Setting) -> Option<Duration> {
        self.parse(setting, parse_duration)
    }

    pub(super) fn secret(&mut self, setting: &'static Setting) -> Option<SecretString> {
        self.text(setting).map(SecretString::from)
    }
}

/// Reads `dispatch.toml` (if present) and then the process environment, the
/// environment winning. Only the settings' names are kept; in the environment
/// they match whatever their case, as they did when figment read it.
pub(super) fn from_file_and_environment(
    file: &Path,
    settings: &[&'static Setting],
) -> Result<BTreeMap<&'static str, String>, Vec<String>> {
    let mut raw = match std::fs::read_to_string(file) {
        Ok(text) => from_toml(&text, &file.display().to_string(), settings)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(vec![format!("{}: {e}", file.display())]),
    };
    for (name, value) in std::env::vars_os() {
        // A name or value that is not UTF-8 cannot be one of ours.
        let (Some(name), Ok(value)) = (name.to_str(), value.into_string()) else {
            continue;
        };
        if let Some(setting) = find(settings, name) {
            raw.insert(setting.env, value);
        }
    }
    Ok(raw)
}

/// The settings in a TOML document of `name = value` lines. Numbers and
/// booleans are taken as their text; the setting's own parser types them.
pub(super) fn from_toml(
    text: &str,
    origin: &str,
    settings: &[&'static Setting],
) -> Result<BTreeMap<&'static str, String>, Vec<String>> {
    let table: toml::Table = text.parse().map_err(|e| vec![format!("{origin}: {e}")])?;
    let mut raw = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in table {
        let Some(setting) = find(settings, &key) else {
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                problems.push(format!("{}: expected a single value", setting.env));
                continue;
            }
        };
        raw.insert(setting.env, text);
    }
    if problems.is_empty() {
        Ok(raw)
    } else {
        Err(problems)
    }
}

fn find(settings: &[&'static Setting], name: &str) -> Option<&'static Setting> {
    settings
        .iter()
        .copied()
        .find(|s| s.env.eq_ignore_ascii_case(name))
}

pub(super) fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:3000"))
}

pub(super) fn parse_duration(v: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(v).map_err(|e| format!("{v:?}: {e} (examples: 30s, 15m, 7d)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    // Bounded so that every setting converts to a `chrono::TimeDelta` and can
    // be added to the current time (`crate::duration`).
    if duration > crate::duration::MAX {
        return Err(format!("{v:?} is longer than 100 years"));
    }
    Ok(duration)
}

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

pub(super) fn parse_number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not a valid number"))
}

/// A comma-separated list, without empty items.
pub(super) fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}
