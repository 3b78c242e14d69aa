//! SQLite: the Proxy API's tables beside the pipeline's ledger in one file, their calls on
//! the ledger's database thread ([`SqliteLedger::call`]), so the file has one user and one
//! lock.

use std::path::PathBuf;
use std::sync::Arc;

use proxy_optout_host::{Ledger, Routing, SessionRoute, SqliteLedger};
use proxy_optout_sqlite::SqliteStore;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::sql::Sql;
use super::{route_row, routing_error, DbError, SESSION_SCHEMA_VERSION};
use crate::proxy::{sqlite_schema, ROUTE};

fn migrate(store: &SqliteStore) -> Result<(), DbError> {
    let schema = sqlite_schema();
    let found = store.with_connection(|c| {
        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
        tx.execute_batch(&schema)?;
        let found: Option<i32> =
            tx.query_row("SELECT max(version) FROM proxy_relay_schema", [], |r| {
                r.get(0)
            })?;
        if found == Some(2) {
            tx.execute_batch(crate::proxy::FROM_V2)?;
        }
        if found.map_or(true, |v| v < SESSION_SCHEMA_VERSION) {
            tx.execute(
                "INSERT INTO proxy_relay_schema (version) VALUES (?1)",
                params![SESSION_SCHEMA_VERSION],
            )?;
        }
        tx.commit()?;
        Ok(found)
    })?;
    match found {
        Some(v) if v > SESSION_SCHEMA_VERSION => Err(DbError::SchemaTooNew {
            found: v,
            supported: SESSION_SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

pub(super) async fn open(path: PathBuf) -> Result<(Sql, Ledger, Arc<dyn Routing>), DbError> {
    let ledger = SqliteLedger::open(path).await?;
    if let Err(e) = ledger.call_durable(migrate).await? {
        Ledger::from(ledger).close().await;
        return Err(e);
    }
    // The session lookup runs on the ledger's thread, inside the decision's job.
    let routing = ledger.routing(|store, from, to| route(store, from, to).map_err(routing_error));
    Ok((
        Sql::Sqlite(ledger.clone()),
        ledger.into(),
        Arc::new(routing),
    ))
}

fn route(store: &SqliteStore, from: &str, to: &str) -> Result<Option<SessionRoute>, DbError> {
    let row = store.with_connection(|c| {
        c.prepare_cached(ROUTE)?
            .query_row(params![from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()
    })?;
    row.map(|(session, other, other_proxy)| route_row(session, from, to, other, other_proxy))
        .transpose()
}
