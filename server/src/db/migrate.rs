//! Forward-only SQL migrations from `migrations/`, embedded in the binary and applied
//! under a PostgreSQL advisory lock, so three replicas starting at once are safe.

use anyhow::Context;
use tokio_postgres::Client;

/// (version, SQL), in order. A landed migration is never edited: add a new file.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_create_users",
        include_str!("../../../migrations/0001_create_users.sql"),
    ),
    (
        "0002_create_urls",
        include_str!("../../../migrations/0002_create_urls.sql"),
    ),
    (
        "0003_create_events",
        include_str!("../../../migrations/0003_create_events.sql"),
    ),
    (
        "0004_create_clicks",
        include_str!("../../../migrations/0004_create_clicks.sql"),
    ),
];

/// An arbitrary, fixed key for `pg_advisory_lock`: "urlshort" in ASCII.
const LOCK_KEY: i64 = 0x7572_6c73_686f_7274;

/// Applies every migration not applied yet; returns how many it applied.
///
/// # Errors
/// When PostgreSQL refuses a statement; the failing migration is rolled back whole.
pub async fn run(client: &mut Client) -> anyhow::Result<usize> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = apply(client).await;
    // Unlock even when applying failed; the session ending would release it too.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let applied = result?;
    unlock.context("releasing the migration lock")?;
    Ok(applied)
}

async fn apply(client: &mut Client) -> anyhow::Result<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    TEXT PRIMARY KEY,
                 applied_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))",
        )
        .await
        .context("creating schema_migrations")?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        let done = client
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying migration {version}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "migration applied");
        applied += 1;
    }
    Ok(applied)
}

/// Connects with the service's settings, for `migrate` and `seed`.
///
/// # Errors
/// When PostgreSQL cannot be reached.
pub async fn connect(cfg: &crate::config::Config) -> anyhow::Result<Client> {
    let (client, conn) = cfg
        .pg_config()?
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::error!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}
