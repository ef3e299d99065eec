//! Checks of the module structure that the compiler cannot make, read from
//! the source tree:
//!
//! - **a table has one writer module**: only the module that owns a table
//!   (`OWNERS`) inserts, updates or deletes its rows, in raw SQL or through
//!   SeaORM; every other module calls the owner's queries. Migrations are
//!   exempt (they create every table).
//! - **`payments` imports no domain**: it is the provider side, and the
//!   dependencies point one way (`orders` and `users` ask `payments` for
//!   provider facts and decide what they do to an order or an account).
//! - **infrastructure names no domain**: `jobs`, `db`, `http` and
//!   `idempotency` import no domain module, name no domain job kind and
//!   touch no domain table; the composition root (`startup`, `api`) wires
//!   the domains into them. The few allowed references are listed in
//!   `INFRASTRUCTURE_MAY_USE`, each with its reason.
//!
//! The scan is deliberately simple (regular expressions over the source
//! with comments blanked out), so it errs on the side of flagging: a false
//! alarm is fixed by moving the write behind the owner's queries, which is
//! what the rule asks anyway.

#![expect(
    clippy::unwrap_used,
    reason = "a source tree that cannot be read fails the check loudly"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use regex::Regex;

/// Table → the folder under `src/` whose code alone may write it.
const OWNERS: &[(&str, &str)] = &[
    ("sessions", "auth"),
    ("items", "catalog"),
    ("idempotency_records", "idempotency"),
    ("jobs", "jobs"),
    ("job_queues", "jobs"),
    ("job_probe_runs", "jobs"),
    ("notifications", "notifications"),
    ("orders", "orders"),
    ("order_lines", "orders"),
    ("order_events", "orders"),
    ("payments", "payments"),
    ("refunds", "payments"),
    ("payment_events", "payments"),
    ("users", "users"),
    ("addresses", "users"),
];

/// Where migrations live (they write every table, by design).
const EXEMPT: &[&str] = &["db/migrations"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One source file: its path under `src/`, the module folder it belongs to
/// (`orders` for `src/orders/jobs.rs`, `startup` for `src/startup.rs`), its
/// text with comments blanked (line numbers kept), and the same with string
/// literals blanked too.
struct Source {
    relative: String,
    module: String,
    code: String,
    code_without_strings: String,
}

fn sources() -> Vec<Source> {
    let root = src_dir();
    let mut files = Vec::new();
    collect_rs_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let module = match relative.split_once('/') {
                Some((folder, _)) => folder.to_owned(),
                None => relative.trim_end_matches(".rs").to_owned(),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                code: blank(&text, false),
                code_without_strings: blank(&text, true),
                relative,
                module,
            }
        })
        .collect()
}

fn collect_rs_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// `text` with comments (and, if asked, string and char literals) replaced
/// by spaces, newlines kept so offsets map to the same lines.
fn blank(text: &str, strings_too: bool) -> String {
    #[derive(PartialEq)]
    enum State {
        Code,
        LineComment,
        BlockComment(usize),
        Str,
        RawStr(usize),
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut state = State::Code;
    let mut i = 0;
    let keep = |c: char, hide: bool, out: &mut String| {
        out.push(if hide && c != '\n' { ' ' } else { c });
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match state {
            State::Code => {
                if c == '/' && next == Some('/') {
                    state = State::LineComment;
                    out.push_str("  ");
                    i += 2;
                    continue;
                }
                if c == '/' && next == Some('*') {
                    state = State::BlockComment(1);
                    out.push_str("  ");
                    i += 2;
                    continue;
                }
                if c == '"' {
                    state = State::Str;
                    out.push(c);
                    i += 1;
                    continue;
                }
                if c == 'r' && (next == Some('#') || next == Some('"')) {
                    let mut hashes = 0;
                    while chars.get(i + 1 + hashes) == Some(&'#') {
                        hashes += 1;
                    }
                    if chars.get(i + 1 + hashes) == Some(&'"') {
                        for &ch in &chars[i..i + 2 + hashes] {
                            out.push(ch);
                        }
                        i += 2 + hashes;
                        state = State::RawStr(hashes);
                        continue;
                    }
                }
                if c == '\'' {
                    // A char literal ('x', '\n', '\''), not a lifetime.
                    let len = if next == Some('\\') {
                        chars[i + 2..]
                            .iter()
                            .position(|&ch| ch == '\'')
                            .map(|p| p + 3)
                    } else if chars.get(i + 2) == Some(&'\'') {
                        Some(3)
                    } else {
                        None
                    };
                    if let Some(len) = len {
                        for &ch in &chars[i..(i + len).min(chars.len())] {
                            keep(ch, strings_too, &mut out);
                        }
                        i += len;
                        continue;
                    }
                }
                out.push(c);
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                    out.push('\n');
                } else {
                    out.push(' ');
                }
            }
            State::BlockComment(depth) => {
                if c == '*' && next == Some('/') {
                    out.push_str("  ");
                    i += 2;
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    continue;
                }
                if c == '/' && next == Some('*') {
                    out.push_str("  ");
                    i += 2;
                    state = State::BlockComment(depth + 1);
                    continue;
                }
                keep(c, true, &mut out);
            }
            State::Str => {
                if c == '\\' {
                    keep(c, strings_too, &mut out);
                    if let Some(n) = next {
                        keep(n, strings_too, &mut out);
                    }
                    i += 2;
                    continue;
                }
                if c == '"' {
                    state = State::Code;
                    out.push(c);
                } else {
                    keep(c, strings_too, &mut out);
                }
            }
            State::RawStr(hashes) => {
                if c == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    out.push('"');
                    for _ in 0..hashes {
                        out.push('#');
                    }
                    i += 1 + hashes;
                    state = State::Code;
                    continue;
                }
                keep(c, strings_too, &mut out);
            }
        }
        i += 1;
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// A write found in the source.
struct Write {
    file: String,
    line: usize,
    module: String,
    table: String,
    how: String,
}

/// SeaORM entity module name (`item`, `order_line`, `job`, …) → its table,
/// from the `#[sea_orm(table_name = "…")]` attributes: the enclosing inline
/// `mod` if there is one, else the file's own name.
fn entity_tables(sources: &[Source]) -> BTreeMap<String, (String, String)> {
    let table_name = Regex::new(r#"table_name\s*=\s*"(\w+)""#).unwrap();
    let inline_mod = Regex::new(r"\bmod\s+(\w+)\s*\{").unwrap();
    let mut entities = BTreeMap::new();
    for source in sources {
        for found in table_name.captures_iter(&source.code) {
            let at = found.get(0).unwrap().start();
            let name = inline_mod
                .captures_iter(&source.code[..at])
                .last()
                .map(|m| m[1].to_owned())
                .unwrap_or_else(|| {
                    let file = source.relative.rsplit('/').next().unwrap();
                    file.trim_end_matches(".rs").to_owned()
                });
            entities.insert(name, (found[1].to_owned(), source.relative.clone()));
        }
    }
    entities
}

fn writes(sources: &[Source]) -> Vec<Write> {
    let entities = entity_tables(sources);
    let owners: BTreeMap<&str, &str> = OWNERS.iter().copied().collect();
    // Raw SQL, with or without quotes around the table name (`\"t\"` inside
    // a Rust string, `"t"` in a raw string, or a backtick).
    let sql = Regex::new(
        r#"(?i)\b(insert\s+into|update|delete\s+from)\s+(?:\\?["`])?([a-z_][a-z0-9_]*)"#,
    )
    .unwrap();
    let write_call =
        r"(insert|insert_many|update|update_many|delete|delete_many|delete_by_id)\s*\(";
    // `order::Entity::update_many(`
    let entity_call = Regex::new(&format!(r"\b(\w+)::Entity::{write_call}")).unwrap();
    // `Orders::update_many(` where `Orders` is `order::Entity` renamed.
    let alias_call = Regex::new(&format!(r"\b([A-Z]\w*)::{write_call}")).unwrap();
    let alias_grouped = Regex::new(r"\b(\w+)::\{[^{}]*?\bEntity\s+as\s+(\w+)").unwrap();
    let alias_single = Regex::new(r"\b(\w+)::Entity\s+as\s+(\w+)").unwrap();
    // `item::ActiveModel { … }.insert(conn)`, `model.update(conn)` on one.
    let active_model = Regex::new(r"\b(\w+)::ActiveModel\b").unwrap();
    let active_write = Regex::new(r"\.(insert|update|save|delete)\s*\(").unwrap();

    let mut found = Vec::new();
    for source in sources {
        if EXEMPT.iter().any(|e| source.relative.starts_with(e)) {
            continue;
        }
        let mut record = |offset: usize, table: &str, how: String| {
            if owners.contains_key(table) {
                found.push(Write {
                    file: source.relative.clone(),
                    line: line_of(&source.code, offset),
                    module: source.module.clone(),
                    table: table.to_owned(),
                    how,
                });
            }
        };
        for m in sql.captures_iter(&source.code) {
            let how = format!("raw SQL `{} {}`", m[1].to_uppercase(), &m[2]);
            record(m.get(0).unwrap().start(), &m[2], how);
        }
        let code = &source.code_without_strings;
        for m in entity_call.captures_iter(code) {
            if let Some((table, _)) = entities.get(&m[1]) {
                let how = format!("SeaORM `{}::Entity::{}`", &m[1], &m[2]);
                record(m.get(0).unwrap().start(), table, how);
            }
        }
        let mut aliases = BTreeMap::new();
        for m in alias_grouped
            .captures_iter(code)
            .chain(alias_single.captures_iter(code))
        {
            aliases.insert(m[2].to_owned(), m[1].to_owned());
        }
        for m in alias_call.captures_iter(code) {
            let Some(entity) = aliases.get(&m[1]) else {
                continue;
            };
            if let Some((table, _)) = entities.get(entity) {
                let how = format!("SeaORM `{}::{}` (= {entity}::Entity)", &m[1], &m[2]);
                record(m.get(0).unwrap().start(), table, how);
            }
        }
        if active_write.is_match(code) {
            for m in active_model.captures_iter(code) {
                if let Some((table, _)) = entities.get(&m[1]) {
                    let how = format!(
                        "SeaORM `{}::ActiveModel` in a file that calls .insert/.update/.save/.delete",
                        &m[1]
                    );
                    record(m.get(0).unwrap().start(), table, how);
                }
            }
        }
    }
    found
}

#[test]
fn every_entity_table_has_an_owner_and_lives_in_it() {
    let sources = sources();
    let owners: BTreeMap<&str, &str> = OWNERS.iter().copied().collect();
    let mut problems = String::new();
    for (entity, (table, file)) in entity_tables(&sources) {
        match owners.get(table.as_str()) {
            None => {
                let _ = writeln!(
                    problems,
                    "  src/{file}: entity `{entity}` maps table `{table}`, which has no owner in \
                     OWNERS (tests/architecture.rs); add `(\"{table}\", \"<module folder>\")`"
                );
            }
            Some(owner) if !file.starts_with(&format!("{owner}/")) => {
                let _ = writeln!(
                    problems,
                    "  src/{file}: entity `{entity}` (table `{table}`) is defined outside its \
                     owner src/{owner}/"
                );
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "\ntable ownership map out of date:\n{problems}"
    );
}

#[test]
fn only_the_owning_module_writes_a_table() {
    let sources = sources();
    let owners: BTreeMap<&str, &str> = OWNERS.iter().copied().collect();
    let writes = writes(&sources);
    // The scan must see the owners' own writes, or it proves nothing.
    let seen: BTreeSet<&str> = writes.iter().map(|w| w.table.as_str()).collect();
    for table in [
        "items",
        "orders",
        "payments",
        "users",
        "jobs",
        "notifications",
    ] {
        assert!(
            seen.contains(table),
            "the scan found no write to `{table}` at all: the patterns in tests/architecture.rs \
             no longer match how the code writes"
        );
    }
    let mut problems = String::new();
    for write in &writes {
        let owner = owners[write.table.as_str()];
        if write.module != owner {
            let _ = writeln!(
                problems,
                "  src/{}:{}: module `{}` writes table `{}` ({}), which belongs to `{owner}`",
                write.file, write.line, write.module, write.table, write.how
            );
        }
    }
    assert!(
        problems.is_empty(),
        "\nA table has one writer module (ARCHITECTURE.md). These writes are outside the owner:\n\
         {problems}\n\
         Fix: add (or reuse) a function in the owner's queries (e.g. `crate::catalog::queries` \
         for `items`) taking the caller's connection or transaction, and call it from here, \
         so it still runs in your transaction. If the table really changed hands, update OWNERS in \
         tests/architecture.rs.\n"
    );
}

#[test]
fn payments_imports_no_domain() {
    let sources = sources();
    let others = "auth|users|catalog|orders|notifications";
    let use_statement = Regex::new(r"(?s)\buse\s[^;]*;").unwrap();
    let domain_word = Regex::new(&format!(r"\b(?:{others})\b")).unwrap();
    let domain_path = Regex::new(&format!(r"\b(?:{others})\s*::")).unwrap();
    let mut problems = String::new();
    for source in sources.iter().filter(|s| s.module == "payments") {
        let code = &source.code_without_strings;
        let mut hits = BTreeSet::new();
        for statement in use_statement.find_iter(code) {
            for m in domain_word.find_iter(statement.as_str()) {
                hits.insert(line_of(code, statement.start() + m.start()));
            }
        }
        for m in domain_path.find_iter(code) {
            hits.insert(line_of(code, m.start()));
        }
        for line in hits {
            let text = source.code.lines().nth(line - 1).unwrap_or("").trim();
            let _ = writeln!(problems, "  src/{}:{line}: {text}", source.relative);
        }
    }
    assert!(
        problems.is_empty(),
        "\n`payments` is the provider side and must not depend on a domain (orders → payments, \
         users → payments, never back):\n\
         {problems}\n\
         Fix: keep provider facts in `payments` (gateway, records, webhook verification) and \
         move what they do to an order into `src/orders/` (payment_outcomes.rs, refunds.rs, \
         reconcile.rs, webhook.rs), or to an account into `src/users/` (customer_sync.rs).\n"
    );
}

#[test]
fn the_scanner_blanks_comments_but_keeps_lines() {
    let text = "let a = 1; // UPDATE items\n/* DELETE FROM users */ let s = \"UPDATE items\";\n";
    let code = blank(text, false);
    assert_eq!(code.lines().count(), 2);
    assert!(!code.contains("UPDATE items\n"));
    assert!(!code.contains("DELETE"));
    assert!(code.contains("\"UPDATE items\""));
    assert!(!blank(text, true).contains("UPDATE"));
    assert!(blank("fn f<'a>(x: &'a str) -> char { 'x' }", true).contains("'a str"));
}

/// The infrastructure modules: generic code every domain builds on.
const INFRASTRUCTURE: &[&str] = &["jobs", "db", "http", "idempotency"];

/// The domain modules.
const DOMAINS: &[&str] = &[
    "auth",
    "users",
    "catalog",
    "orders",
    "payments",
    "notifications",
];

/// (file or folder under `src/`, domain path prefix it may name, why).
const INFRASTRUCTURE_MAY_USE: &[(&str, &str, &str)] = &[
    (
        "jobs/registry.rs",
        "notifications::hub",
        "the services handed to job handlers appear in the job context's type",
    ),
    (
        "jobs/registry.rs",
        "payments::gateway",
        "the services handed to job handlers appear in the job context's type",
    ),
    (
        "jobs/routes.rs",
        "auth::",
        "the operator JSON API signs staff in like every route",
    ),
    (
        "jobs/dashboard/",
        "auth::",
        "the dashboard signs staff in through auth::sign_in",
    ),
    (
        "jobs/dashboard/",
        "auth",
        "the dashboard signs staff in through auth::sign_in",
    ),
    (
        "jobs/dashboard/",
        "users::role",
        "only admins may use the dashboard",
    ),
];

fn may_use(relative: &str, path: &str) -> bool {
    INFRASTRUCTURE_MAY_USE
        .iter()
        .any(|(place, prefix, _)| relative.starts_with(place) && path.starts_with(prefix))
}

#[test]
fn infrastructure_names_no_domain() {
    let sources = sources();
    let domain = DOMAINS.join("|");
    // `crate::orders::…`, `orders::…` in a use tree, or a bare `orders` item
    // inside `use crate::{…}`.
    let domain_path = Regex::new(&format!(r"\b(?:{domain})\b(?:\s*::\s*\w+)*")).unwrap();
    let use_statement = Regex::new(r"(?s)\buse\s[^;]*;").unwrap();
    let path_use = Regex::new(&format!(r"\b(?:{domain})\s*::[\w:]*")).unwrap();
    // A job kind is `<domain word>.<name>` in a string: `"order.process"`.
    let kind = Regex::new(r#""(?:auth|user|item|order|payment|notification)\.[a-z_]+""#).unwrap();
    let domain_tables: Vec<&str> = OWNERS
        .iter()
        .filter(|(_, owner)| !INFRASTRUCTURE.contains(owner))
        .map(|(table, _)| *table)
        .collect();
    let table = Regex::new(&format!(
        r#"(?i)\b(?:from|join|into|update)\s+"?(?:{})"?\b"#,
        domain_tables.join("|")
    ))
    .unwrap();
    let mut problems = String::new();
    for source in sources
        .iter()
        .filter(|s| INFRASTRUCTURE.contains(&s.module.as_str()))
    {
        let code = &source.code_without_strings;
        let mut hits = BTreeSet::new();
        for statement in use_statement.find_iter(code) {
            for m in domain_path.find_iter(statement.as_str()) {
                if !may_use(&source.relative, m.as_str()) {
                    hits.insert(line_of(code, statement.start() + m.start()));
                }
            }
        }
        for m in path_use.find_iter(code) {
            let before = &code[..m.start()];
            let is_inside_path = before.ends_with("::") || before.ends_with('.');
            if !is_inside_path && !may_use(&source.relative, m.as_str()) {
                hits.insert(line_of(code, m.start()));
            }
        }
        for m in kind
            .find_iter(&source.code)
            .chain(table.find_iter(&source.code))
        {
            hits.insert(line_of(&source.code, m.start()));
        }
        for line in hits {
            let text = source.code.lines().nth(line - 1).unwrap_or("").trim();
            let _ = writeln!(problems, "  src/{}:{line}: {text}", source.relative);
        }
    }
    assert!(
        problems.is_empty(),
        "\nInfrastructure (`jobs`, `db`, `http`, `idempotency`) must not name a domain:\n\
         {problems}\n\
         Fix: let the domain hand its part to the infrastructure from the composition root \
         (`startup::job_registry`, `startup::job_schedule`, `api::api_router`, db::effects), \
         or, if the reference is a service the infrastructure is meant to carry, add it to \
         INFRASTRUCTURE_MAY_USE with the reason.\n"
    );
}
