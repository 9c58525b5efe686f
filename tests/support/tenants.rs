//! Tenants in a real store for tests: a migrated database of the test's own, the store CLI run
//! with the test store's secrets, and a tenant with a server config, an instance and a key.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::{echo_upstream, sekisho_cli};
use crate::postgres::TestDb;

/// The test store's key pepper.
pub const PEPPER: &str = "test-pepper-0123456789abcdef0123456789";
/// The test store's secret key: base64 of 32 bytes of 0x2a.
pub const SECRET_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// A database of the test's own with every migration applied.
pub async fn migrated() -> TestDb {
    let db = TestDb::create().await;
    let pool = sekisho::store::pool(&db.url, 1, Duration::from_secs(5)).unwrap();
    sekisho::store::migrate(&pool).await.unwrap();
    pool.close().await;
    db
}

/// Run the CLI against the database at URL `db` with the store's secrets and `env` in its
/// environment; stdout.
pub async fn cli(db: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let args = [args, &["--database-url", db]].concat();
    let env = [&[("SEKISHO_STORE__KEY_PEPPER", PEPPER), ("SEKISHO_STORE__SECRET_KEY", SECRET_KEY)], env].concat();
    let run = sekisho_cli(&args, &env).await;
    assert!(run.ok, "sekisho {args:?} failed: {}", run.err);
    run.out
}

/// The key a `key create` printed (its last line).
pub fn created_key(out: &str) -> String {
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("sks_"), "{out}");
    key
}

/// Tenant `tenant` with a stdio echo server config `tools` whose environment has
/// `SECRET_TOKEN=secret-of-<tenant>`, an instance `main` with `grants` (`tools:<pattern>`, or
/// `shared:<pattern>` for the static upstream `shared`), and a key.
pub async fn tenant(db: &str, tenant: &str, grants: &[&str]) -> String {
    let echo = echo_upstream().display().to_string();
    cli(db, &["tenant", "create", tenant], &[]).await;
    let secret = format!("secret-of-{tenant}");
    let server = [
        "server",
        "create",
        "tools",
        "--tenant",
        tenant,
        "--command",
        &echo,
        "--arg",
        "stdio",
        "--arg",
        "--era",
        "--arg",
        "legacy",
        "--env",
        "SECRET_TOKEN",
    ];
    cli(db, &server, &[("SECRET_TOKEN", &secret)]).await;
    let mut instance = vec!["instance", "create", "main", "--tenant", tenant];
    for g in grants {
        // `shared:<pattern>` grants the static upstream `shared`; the rest name `tools`.
        instance.extend([if g.starts_with("shared:") { "--shared" } else { "--tool" }, g]);
    }
    cli(db, &instance, &[]).await;
    created_key(&cli(db, &["key", "create", "--tenant", tenant, "--instance", "main", "--name", "ci"], &[]).await)
}
