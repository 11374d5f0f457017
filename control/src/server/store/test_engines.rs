//! A store on each engine for the store's own tests: SQLite in a temp dir
//! and a new database of this test process's throwaway PostgreSQL cluster,
//! so one test body runs against both.

use std::sync::atomic::{AtomicU32, Ordering};

use super::Store;

/// The two stores, each with the directory that keeps it alive. The
/// PostgreSQL database is named after `prefix` and made with `options`
/// after `CREATE DATABASE name` (e.g. a collation).
pub async fn stores(prefix: &str, options: &str) -> Vec<(tempfile::TempDir, Store)> {
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&format!("sqlite://{}/launch.db", dir.path().display()))
        .await
        .unwrap();
    let cluster = super::super::test_postgres::Cluster::shared();
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    cluster.psql(&format!("CREATE DATABASE {name} {options}"));
    let postgres = Store::open(&cluster.url(&name)).await.unwrap();
    vec![(dir, sqlite), (tempfile::tempdir().unwrap(), postgres)]
}
