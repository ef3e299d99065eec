//! Operations surfaces: the files the service keeps private, `/metrics`
//! behind its token or its own listener, `/health/ready` per dependency.

use dispatch::{config::Config, startup};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The embedded setup from nothing: SQLite in a new data directory and every
/// development secret generated. Always SQLite (the files are its own).
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_the_secrets_folder_are_created_owner_only() {
    // What `spawn_app` does first; this test builds the state itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let config = Config::from_pairs([
        ("DATA_DIR", data_dir.display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/dispatch.db", data_dir.display()),
        ),
        ("SEED_DEMO_DATA", "false".into()),
        ("PASSWORD_HASH_MEMORY_KIB", "64".into()),
    ])
    .unwrap();
    // Migrations write, so the write-ahead log and shared memory exist after.
    let state = startup::build_state(config).await.unwrap();

    assert_eq!(mode(&data_dir), 0o700, "DATA_DIR");
    for name in ["dispatch.db", "dispatch.db-wal", "dispatch.db-shm"] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
    let secrets = data_dir.join("secrets");
    assert_eq!(mode(&secrets), 0o700, "secrets folder");
    for name in [
        "jwt_access_secret",
        "jwt_refresh_secret",
        "admin_password",
        "stripe_webhook_secret",
    ] {
        assert_eq!(mode(&secrets.join(name)), 0o600, "{name}");
    }
    drop(state);
}
