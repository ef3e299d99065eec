use std::{collections::BTreeSet, time::Duration};

use super::*;

#[test]
fn defaults_give_the_embedded_development_setup() {
    let config = Config::from_pairs([]).unwrap();
    assert_eq!(config.environment, Environment::Development);
    assert!(config.database_is_sqlite());
    assert!(config.redis_url.is_none());
    assert_eq!(config.payment_gateway, GatewayKind::Simulated);
    assert_eq!(config.jwt_access_ttl, Duration::from_secs(15 * 60));
    assert_eq!(
        config.rate_limit_login,
        Some(RateQuota {
            requests: 5,
            period: Duration::from_secs(60)
        })
    );
    assert!(config.seed_demo_data);
}

#[test]
fn production_refuses_default_secrets_simulated_gateway_and_seeding() {
    let err = Config::from_pairs([
        ("DISPATCH_ENV", "production".into()),
        ("SEED_DEMO_DATA", "true".into()),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("JWT_ACCESS_SECRET: required in production"),
        "{text}"
    );
    assert!(
        text.contains("JWT_REFRESH_SECRET: required in production"),
        "{text}"
    );
    assert!(text.contains("PAYMENT_GATEWAY"), "{text}");
    assert!(text.contains("SEED_DEMO_DATA"), "{text}");
    assert!(text.contains("ADMIN_PASSWORD"), "{text}");
}

#[test]
fn every_problem_is_reported_on_its_own_line() {
    let err = Config::from_pairs([
        ("BIND_ADDR", "nowhere".into()),
        ("JWT_ACCESS_TTL", "soon".into()),
        ("RATE_LIMIT_LOGIN", "5 per minute".into()),
    ])
    .unwrap_err();
    assert_eq!(err.problems.len(), 3, "{:?}", err.problems);
}

#[test]
fn numbers_and_booleans_in_dispatch_toml_are_read_as_text() {
    let all: Vec<_> = settings().collect();
    let raw = settings::from_toml(
        "db_max_connections = 8\nseed_demo_data = false\nsimulated_decline_suffix = \"02\"\n",
        "dispatch.toml",
        &all,
    )
    .unwrap();
    let config = Config::from_raw(raw).unwrap();
    assert_eq!(config.db_max_connections, 8);
    assert!(!config.seed_demo_data);
    assert_eq!(config.simulated_decline_suffix, "02");
}

#[test]
fn a_table_in_dispatch_toml_is_a_problem_and_unknown_names_are_ignored() {
    let all: Vec<_> = settings().collect();
    let problems = settings::from_toml(
        "unrelated = 1\n[bind_addr]\nhost = \"x\"\n",
        "dispatch.toml",
        &all,
    )
    .unwrap_err();
    assert_eq!(problems, ["BIND_ADDR: expected a single value"]);
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config =
        Config::from_pairs([("JWT_ACCESS_SECRET", "super-secret-value-1234567890".into())])
            .unwrap();
    assert!(!format!("{config:?}").contains("super-secret-value"));
}

#[test]
fn the_settings_list_names_exactly_what_the_sections_read() {
    // Production with every conditional branch reached: the sections must ask
    // for each setting whatever the values.
    let mut reader = Reader::new(
        [("DISPATCH_ENV", "production".to_owned())]
            .into_iter()
            .collect(),
    );
    let _ = Config::read(&mut reader);
    let listed: BTreeSet<&str> = settings().map(|s| s.env).collect();
    assert_eq!(reader.consulted(), &listed);
    assert_eq!(
        listed.len(),
        settings().count(),
        "a setting is listed twice"
    );
}

#[test]
fn rate_quotas_parse_counts_and_periods() {
    assert_eq!(RateQuota::parse("off").unwrap(), None);
    assert_eq!(
        RateQuota::parse("100/h").unwrap(),
        Some(RateQuota {
            requests: 100,
            period: Duration::from_secs(3600)
        })
    );
    assert_eq!(
        RateQuota::parse("10/30s").unwrap(),
        Some(RateQuota {
            requests: 10,
            period: Duration::from_secs(30)
        })
    );
    assert!(RateQuota::parse("0/min").is_err());
    assert!(RateQuota::parse("five/min").is_err());
}

#[test]
fn dispatch_toml_is_read_when_present_and_optional_otherwise() {
    let all: Vec<_> = settings().collect();
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("dispatch.toml");
    assert!(settings::from_file_and_environment(&file, &all).is_ok());
    std::fs::write(&file, "shop_currency = \"eur\"\n").unwrap();
    let raw = settings::from_file_and_environment(&file, &all).unwrap();
    // The environment wins over the file, so only check when it is silent.
    if std::env::var_os("SHOP_CURRENCY").is_none() {
        assert_eq!(raw.get("SHOP_CURRENCY").map(String::as_str), Some("eur"));
    }
    std::fs::write(&file, "shop_currency = ").unwrap();
    assert!(settings::from_file_and_environment(&file, &all).is_err());
}

#[test]
fn durations_longer_than_a_hundred_years_are_refused() {
    let err = Config::from_pairs([("JOB_RETENTION", "101years".into())]).unwrap_err();
    assert_eq!(
        err.problems,
        ["JOB_RETENTION: \"101years\" is longer than 100 years"]
    );
    assert!(Config::from_pairs([("JOB_RETENTION", "100years".into())]).is_ok());
}

/// The README's configuration table: each row's first cell names one or more
/// variables in backticks; the whole row is returned with them.
fn readme_rows() -> Vec<(Vec<String>, String)> {
    let readme = include_str!("../../README.md");
    let mut lines = readme
        .lines()
        .skip_while(|line| !line.starts_with("| Variable |"));
    lines.next();
    lines
        .take_while(|line| line.starts_with('|'))
        .filter(|line| !line.starts_with("|---"))
        .map(|row| {
            let first_cell = row.split('|').nth(1).unwrap_or_default();
            let names = first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (names, row.to_owned())
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_settings_with_their_defaults() {
    let rows = readme_rows();
    assert!(!rows.is_empty(), "README.md: no `| Variable |` table found");
    let documented: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(names, _)| names.iter().map(String::as_str))
        .collect();
    let read: BTreeSet<&str> = settings().map(|s| s.env).collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README.md configuration table: missing {missing:?}, not read by the code {unknown:?}"
    );
    for setting in settings() {
        if let DefaultValue::Text(default) = setting.default {
            let (_, row) = rows
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == setting.env))
                .unwrap();
            assert!(
                row.contains(&format!("`{default}`")),
                "README.md: the row of {} does not give its default `{default}`",
                setting.env
            );
        }
    }
}

/// A production configuration that passes, for tests that change one value.
fn production_pairs() -> Vec<(&'static str, String)> {
    vec![
        ("DISPATCH_ENV", "production".into()),
        ("DATABASE_URL", "postgres://dispatch@db/dispatch".into()),
        ("JWT_ACCESS_SECRET", "a".repeat(32)),
        ("JWT_REFRESH_SECRET", "r".repeat(32)),
        ("ADMIN_PASSWORD", "sixteen-chars-ok".into()),
        ("PAYMENT_GATEWAY", "stripe".into()),
        ("STRIPE_SECRET_KEY", "sk_test_123".into()),
        ("STRIPE_WEBHOOK_SECRETS", "whsec_abc".into()),
        ("METRICS_TOKEN", "m".repeat(32)),
    ]
}

/// The problems of the production configuration with `changes` applied.
fn production_problems(changes: &[(&'static str, &str)]) -> Vec<String> {
    let mut pairs = production_pairs();
    for (name, value) in changes {
        pairs.retain(|(n, _)| n != name);
        pairs.push((name, (*value).to_owned()));
    }
    match Config::from_pairs(pairs) {
        Ok(_) => Vec::new(),
        Err(err) => err.problems,
    }
}

#[test]
fn the_production_baseline_of_these_tests_is_accepted() {
    assert_eq!(production_problems(&[]), Vec::<String>::new());
}

#[test]
fn production_refuses_each_weak_secret_with_one_line() {
    let placeholder = "dev-only-jwt_access_secret-padded-to-32-characters";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("JWT_ACCESS_SECRET", placeholder)],
            "JWT_ACCESS_SECRET: a development placeholder (dev-only-…) is refused in production",
        ),
        (
            &[("JWT_REFRESH_SECRET", "short")],
            "JWT_REFRESH_SECRET: must be at least 32 characters in production",
        ),
        (
            &[("JWT_REFRESH_SECRET", &"a".repeat(32))],
            "JWT_REFRESH_SECRET: must differ from JWT_ACCESS_SECRET in production",
        ),
        (
            &[("ADMIN_PASSWORD", "fifteen-chars!!")],
            "ADMIN_PASSWORD: must be at least 16 characters in production",
        ),
        (
            &[("ADMIN_PASSWORD", "dev-only-admin_password")],
            "ADMIN_PASSWORD: a development placeholder (dev-only-…) is refused in production",
        ),
        (
            &[(
                "STRIPE_WEBHOOK_SECRETS",
                "whsec_new,sk_live_pasted_by_mistake",
            )],
            "STRIPE_WEBHOOK_SECRETS: entry 2 does not start with whsec_ (Stripe's signing secrets do)",
        ),
        (
            &[("METRICS_TOKEN", "")],
            "METRICS_TOKEN: required in production unless METRICS_ADDR serves /metrics on a private listener",
        ),
        (
            &[("METRICS_TOKEN", "short")],
            "METRICS_TOKEN: must be at least 32 characters in production",
        ),
        (
            &[("STRIPE_WEBHOOK_SECRETS", "dev-only-stripe_webhook_secret")],
            "STRIPE_WEBHOOK_SECRETS: a development placeholder (dev-only-…) is refused in production",
        ),
    ];
    for (changes, line) in cases {
        assert_eq!(production_problems(changes), [*line], "{changes:?}");
    }
}

#[test]
fn development_accepts_what_production_refuses() {
    let config = Config::from_pairs([
        ("JWT_ACCESS_SECRET", "same".into()),
        ("JWT_REFRESH_SECRET", "same".into()),
        ("ADMIN_PASSWORD", "a".into()),
    ])
    .unwrap();
    assert_eq!(config.environment, Environment::Development);
}

#[test]
fn production_generates_no_development_secret() {
    // Every secret left out is a problem of its own, never a generated placeholder.
    let problems = production_problems(&[
        ("JWT_ACCESS_SECRET", ""),
        ("JWT_REFRESH_SECRET", ""),
        ("ADMIN_PASSWORD", ""),
    ]);
    assert_eq!(
        problems,
        [
            "JWT_ACCESS_SECRET: required in production",
            "JWT_REFRESH_SECRET: required in production",
            "ADMIN_PASSWORD: required in production (dashboard Basic credentials)",
        ]
    );
}

#[test]
fn the_retired_trust_forwarded_for_fails_with_one_line_naming_its_replacement() {
    for value in ["true", "false"] {
        let err = Config::from_pairs([("TRUST_FORWARDED_FOR", value.into())]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
        assert!(
            err.problems[0].starts_with(
                "TRUST_FORWARDED_FOR is no longer read: replaced by TRUSTED_PROXY_HOPS"
            ),
            "{:?}",
            err.problems
        );
    }
    let config = Config::from_pairs([("TRUSTED_PROXY_HOPS", "2".into())]).unwrap();
    assert_eq!(config.trusted_proxy_hops, 2);
    assert_eq!(Config::from_pairs([]).unwrap().trusted_proxy_hops, 0);
}

#[test]
fn the_retired_variable_is_refused_from_dispatch_toml_too() {
    let all: Vec<_> = settings().chain(retired()).collect();
    let raw = settings::from_toml("trust_forwarded_for = true\n", "dispatch.toml", &all).unwrap();
    let err = Config::from_raw(raw).unwrap_err();
    assert!(
        err.problems[0].contains("TRUSTED_PROXY_HOPS"),
        "{:?}",
        err.problems
    );
}

#[test]
fn production_needs_no_metrics_token_when_metrics_have_their_own_listener() {
    let problems = production_problems(&[("METRICS_TOKEN", ""), ("METRICS_ADDR", "0.0.0.0:9100")]);
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn connection_limits_have_defaults_and_refuse_zero() {
    let config = Config::from_pairs([]).unwrap();
    assert_eq!(config.http_header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.http_idle_timeout, Duration::from_secs(75));
    assert_eq!(config.http_max_connections, 1024);
    let err = Config::from_pairs([("HTTP_MAX_CONNECTIONS", "0".into())]).unwrap_err();
    assert!(
        err.problems[0].starts_with("HTTP_MAX_CONNECTIONS"),
        "{:?}",
        err.problems
    );
}
