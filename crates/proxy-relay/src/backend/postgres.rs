//! PostgreSQL: the Proxy API's tables in the store's schema (its connections set the
//! `search_path`), beside the pipeline's ledger, shared by every relay instance.

use std::sync::Arc;

use proxy_optout_host::{Ledger, PgLedger, Routing};
use proxy_optout_postgres::{Commit, Options, PgStore, StoreError};

use super::sql::{dollar, Sql};
use super::{DbError, SESSION_SCHEMA_VERSION};
use crate::proxy::{pg_schema, ROUTE};

pub(super) async fn open(
    url: &str,
    pool_size: usize,
) -> Result<(Sql, Ledger, Arc<dyn Routing>), DbError> {
    let pg = PgStore::connect_with(
        url,
        Options::default()
            .pool_size(pool_size)
            .application_name("proxy-relay")
            .answer_commit(Commit::Asynchronous),
    )
    .await?;
    let mut c = pg.pool().get().await.map_err(StoreError::from)?;
    let tx = c.transaction().await?;
    // Every instance may start at once: one creates the tables, the others wait here.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('proxy_relay_migrate'))",
        &[],
    )
    .await?;
    tx.batch_execute(&pg_schema()).await?;
    let found: Option<i64> = tx
        .query_one("SELECT max(version)::BIGINT FROM proxy_relay_schema", &[])
        .await?
        .get(0);
    if let Some(v) = found.filter(|v| *v > i64::from(SESSION_SCHEMA_VERSION)) {
        return Err(DbError::SchemaTooNew {
            found: v as i32,
            supported: SESSION_SCHEMA_VERSION,
        });
    }
    if found == Some(2) {
        tx.batch_execute(crate::proxy::FROM_V2).await?;
    }
    if found.map_or(true, |v| v < i64::from(SESSION_SCHEMA_VERSION)) {
        tx.execute(
            "INSERT INTO proxy_relay_schema (version) VALUES ($1::TEXT::BIGINT)",
            &[&SESSION_SCHEMA_VERSION.to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    drop(c);
    let ledger = PgLedger::from_store(pg.clone()).await?;
    // The session lookup runs inside the decision's one statement.
    let routing = ledger.routing(&dollar(ROUTE)).await?;
    Ok((Sql::Postgres(pg), ledger.into(), Arc::new(routing)))
}
