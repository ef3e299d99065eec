//! The `dispatch` command line: serve, migrate, openapi, create-admin,
//! healthcheck, version.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dispatch::{
    config::Config,
    db::{self, Database},
    demo, startup, telemetry,
    users::{
        email::Email,
        language::Language,
        queries::{self, NewUser},
        role::Role,
    },
};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dispatch",
    version,
    about = "Order-management backend for online shops"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default when no command is given).
    Serve {
        /// Which parts this process runs.
        #[arg(long, value_enum, default_value_t = ProcessRole::All)]
        role: ProcessRole,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (JSON) and exit.
    Openapi,
    /// Create an admin or superadmin account.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, env = "DISPATCH_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, value_enum, default_value_t = AdminRole::Superadmin)]
        role: AdminRole,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
    /// Probe a running server (for container health checks): GET the URL
    /// with a short timeout; exit 0 on a 2xx answer, 1 otherwise.
    Healthcheck {
        /// What to GET. Default: `/health/ready` on `BIND_ADDR` (an
        /// unspecified address such as 0.0.0.0 becomes loopback).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the version and exit.
    Version,
}

/// `api`: the HTTP API only. `worker`: job workers and the scheduler, no
/// HTTP (metrics on `METRICS_ADDR` if set). `all`: both, in one process.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ProcessRole {
    Api,
    Worker,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum AdminRole {
    Superadmin,
    Admin,
}

fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider; pick ring once, here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads())
        .build()
        .context("starting the async runtime")?;
    match cli.command.unwrap_or(Command::Serve {
        role: ProcessRole::All,
    }) {
        Command::Version => {
            println!("dispatch {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Openapi => {
            println!("{}", dispatch::api::document().to_pretty_json()?);
            Ok(())
        }
        Command::Migrate => runtime.block_on(migrate()),
        Command::CreateAdmin {
            email,
            password,
            role,
            name,
        } => runtime.block_on(create_admin(email, password, role, name)),
        Command::Serve { role } => runtime.block_on(serve(role)),
        Command::Healthcheck { url } => runtime.block_on(healthcheck(url)),
    }
}

/// Threads of the runtime's blocking pool: twice the CPUs, at least 4.
/// Its work is password hashing (argon2id, 19 MiB and one CPU for tens of
/// milliseconds each), migrations and file reads at start-up. Tokio's
/// default, 512, let 512 hashes hold 19 MiB each at once; more threads than
/// CPUs only divide the same CPUs, so a burst waits in the pool's queue
/// (a closure each, not its 19 MiB) instead.
fn blocking_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus * 2).max(4)
}

fn load_config() -> anyhow::Result<Config> {
    let config = Config::load()?;
    telemetry::init_tracing(config.log_format, &config.log_level);
    Ok(config)
}

async fn migrate() -> anyhow::Result<()> {
    let config = load_config()?;
    let db = Database::connect(&config).await?;
    db::migrations::run(&db, &config).await?;
    println!("migrations applied");
    Ok(())
}

async fn create_admin(
    email: String,
    password: String,
    role: AdminRole,
    name: String,
) -> anyhow::Result<()> {
    if !(8..=128).contains(&password.chars().count()) {
        bail!("the password must be 8 to 128 characters long");
    }
    let Ok(email) = Email::parse(email.trim()) else {
        bail!("{:?} is not an email address", email.trim().to_lowercase());
    };
    let config = load_config()?;
    let state = startup::build_state(config).await?;
    let password_hash = state.passwords.hash(&SecretString::from(password)).await?;
    let txn = state.db.begin_write().await?;
    let user = queries::insert(
        &*txn,
        NewUser {
            name,
            email,
            password_hash,
            role: match role {
                AdminRole::Superadmin => Role::Superadmin,
                AdminRole::Admin => Role::Admin,
            },
            language: Language::En,
        },
    )
    .await
    .context("creating the account")?;
    txn.commit().await?;
    println!(
        "created {} {} ({})",
        user.role.as_str(),
        user.email,
        user.id
    );
    Ok(())
}

async fn serve(role: ProcessRole) -> anyhow::Result<()> {
    let config = load_config()?;
    let bind_addr = config.bind_addr;
    let seed = config.seed_demo_data && role != ProcessRole::Worker;
    let state = startup::build_state(config).await?;
    if seed {
        demo::seed(&state).await.context("seeding demo data")?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));

    let workers = (role != ProcessRole::Api).then(|| startup::Workers::start_standard(&state));
    if role == ProcessRole::Worker {
        // No HTTP API; metrics only where METRICS_ADDR asks for them.
        if let Some(address) = state.config.metrics_addr {
            startup::spawn_metrics_listener(state.clone(), address, shutdown.clone()).await?;
        }
        tracing::info!("Dispatch worker running");
        shutdown.cancelled().await;
    } else {
        let listener = TcpListener::bind(bind_addr)
            .await
            .with_context(|| format!("binding {bind_addr}"))?;
        tracing::info!(address = %bind_addr, "Dispatch listening; API docs at http://{bind_addr}/api/docs");
        startup::serve(state.clone(), listener, shutdown).await?;
    }
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    state.db.clone().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// GETs `url` (default: `/health/ready` on `BIND_ADDR`); an error, and so
/// exit status 1, unless the answer is 2xx. Reads only `BIND_ADDR`, not the
/// whole configuration, so it works wherever the server's environment does.
async fn healthcheck(url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let text = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
            let mut address: std::net::SocketAddr = text
                .trim()
                .parse()
                .with_context(|| format!("BIND_ADDR {text:?} is not an address"))?;
            if address.ip().is_unspecified() {
                address.set_ip(match address {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{address}/health/ready")
        }
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    println!("GET {url}: {status}");
    Ok(())
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    token.cancel();
}
