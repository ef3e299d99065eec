//! `dispatch-loadtest`: drives a running Dispatch with virtual users, reports
//! throughput, latency and status counts, then **verifies through the API**
//! that nothing was lost or done twice: every accepted order reached its
//! expected status with one timeline event per transition, replayed keys
//! returned the same order, stock is conserved, and no job failed. Exits
//! non-zero when the verification fails.
//!
//! ```sh
//! dispatch-loadtest --url http://127.0.0.1:3000 --scenario checkout \
//!   --users 32 --duration 30s --admin-email admin@example.com --admin-password …
//! ```
//!
//! A separate binary (not a `dispatch` subcommand) so the service's image
//! carries no load-testing code.

mod client;
mod scenario;
mod setup;
mod stats;
mod verify;

use std::{sync::Arc, time::Duration};

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Catalogue reads (list and item pages), anonymous.
    Browse,
    /// Each virtual user registers and signs in once, then places orders
    /// with fresh idempotency keys.
    Checkout,
    /// Orders whose requests are replayed with the same key, and payment
    /// webhooks delivered twice (needs `--webhook-secret`).
    Duplicates,
    /// 70 % browse, 25 % checkout, 5 % duplicates.
    Mixed,
    /// A sign-in flood: every virtual user signs in at once, half of them
    /// with a wrong password, against a handful of accounts (each attempt
    /// is one password hash on the server). Every answer must be 200, 401,
    /// 429, or 503 with `Retry-After`; anything else, a transport error
    /// included, is unexpected. Run it with `--requests` equal to `--users`
    /// for one wave of simultaneous sign-ins.
    SignIns,
}

#[derive(Debug, Parser)]
#[command(
    name = "dispatch-loadtest",
    version,
    about = "Load generator and verifier for Dispatch"
)]
pub struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Scenario::Mixed)]
    pub scenario: Scenario,
    /// Virtual users (concurrent clients).
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// How long to run (`30s`, `2m`); ignored when `--requests` is given.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations in total instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Cap on operations per second across all users.
    #[arg(long)]
    pub rate: Option<u32>,
    /// An admin account (items are created, orders and jobs verified with it).
    #[arg(long, env = "LOADTEST_ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "LOADTEST_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// The service's webhook signing secret (first of
    /// `STRIPE_WEBHOOK_SECRETS`), for the duplicated-webhook scenario.
    #[arg(long, env = "LOADTEST_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// How long the verification waits for the jobs to settle.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
    /// Skip the verification pass (measurement only).
    #[arg(long)]
    pub no_verify: bool,
    /// How long the client waits for one answer before counting a
    /// transport error.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(run(args))?;
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<i32> {
    let client = client::Api::new(&args.url, args.timeout)?;
    eprintln!("setting up against {} …", args.url);
    let fixture = Arc::new(setup::prepare(&client, &args).await?);
    eprintln!(
        "run {}: {} items, {} users ready; running {:?} with {} users",
        fixture.run,
        fixture.items.len(),
        fixture.users.len(),
        args.scenario,
        args.users
    );
    let outcome = scenario::run(&client, &args, Arc::clone(&fixture)).await;
    let mut report = stats::Report::new(&args, &outcome);
    eprintln!();
    println!("{}", report.human());
    let mut code = 0;
    if !args.no_verify {
        eprintln!("verifying …");
        let verdict = verify::verify(&client, &args, &fixture, &outcome).await?;
        println!("{}", verdict.human());
        if !verdict.passed() {
            code = 1;
        }
        report.verification = Some(verdict);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(code)
}
