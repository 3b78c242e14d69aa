//! One way to run the session tables' SQL on either database, so each operation (creating a
//! session, picking a proxy number, recording an Interaction) is written once. An operation
//! is a synchronous function over a [`Tx`]: on SQLite it runs on the ledger's database
//! thread inside an `IMMEDIATE` transaction; on PostgreSQL on tokio's blocking pool, each
//! statement driven to completion on the runtime, inside a transaction. Statements use
//! SQLite's `?1` placeholders; PostgreSQL gets them as `$1`.

use proxy_optout_host::SqliteLedger;
use proxy_optout_postgres::tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use proxy_optout_postgres::PgStore;
use rusqlite::{Transaction, TransactionBehavior};

use super::DbError;

/// A value going in or coming out: the tables hold only integers and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn owned_text(&self) -> Option<String> {
        self.text().map(str::to_owned)
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_owned())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Val {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}
impl From<bool> for Val {
    fn from(b: bool) -> Val {
        Val::Int(i64::from(b))
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// A result row.
pub(crate) type Row = Vec<Val>;

/// A transaction on either database.
pub(crate) trait Tx {
    /// Runs a query and returns every row.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, DbError>;
    /// Runs a statement and returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError>;
    /// Serialises writers on `key` until the transaction ends (PostgreSQL's advisory lock;
    /// SQLite's `IMMEDIATE` transaction already holds the only write lock).
    fn lock(&mut self, key: &str) -> Result<(), DbError>;

    /// Whether this is PostgreSQL: for the few statements whose SQL differs (reading a
    /// JSON parameter as a table).
    fn postgres(&self) -> bool {
        false
    }

    /// A common table expression `x` over the JSON array of objects in parameter `?1`,
    /// with `columns` as its text columns: one statement for a group of rows.
    fn json_rows(&self, columns: &[&str]) -> String {
        if self.postgres() {
            let typed: Vec<String> = columns.iter().map(|c| format!("{c} TEXT")).collect();
            format!(
                "x AS (SELECT * FROM json_to_recordset(CAST(?1 AS json)) AS r({}))",
                typed.join(", ")
            )
        } else {
            let picked: Vec<String> = columns
                .iter()
                .map(|c| format!("json_extract(value, '$.{c}') AS {c}"))
                .collect();
            format!("x AS (SELECT {} FROM json_each(?1))", picked.join(", "))
        }
    }

    /// The first row, if any.
    fn row(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// Where operations run.
#[derive(Clone, Debug)]
pub(crate) enum Sql {
    Sqlite(SqliteLedger),
    Postgres(PgStore),
}

impl Sql {
    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise,
    /// and on disk when this returns.
    pub(crate) async fn run<T, E>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.transact(true, f).await
    }

    /// As [`run`](Self::run), without waiting for the sync (SQLite's group sync,
    /// PostgreSQL's WAL flush: an asynchronous commit): for the Interaction log, which a
    /// crash may shorten by its last entries but never corrupt (the ledger, which decides
    /// what is sent, is synced on its own path).
    pub(crate) async fn run_relaxed<T, E>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.transact(false, f).await
    }

    async fn transact<T, E>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match self {
            Sql::Sqlite(ledger) => {
                let job = move |store: &proxy_optout_sqlite::SqliteStore| {
                    let mut out = None;
                    let done = store.with_connection(|c| {
                        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
                        let mut lite = Lite { tx: &tx };
                        let result = f(&mut lite);
                        let ok = result.is_ok();
                        out = Some(result);
                        if ok {
                            tx.commit()?;
                        }
                        Ok(())
                    });
                    (done, out)
                };
                let ran = if durable {
                    ledger.call_durable(job).await
                } else {
                    ledger.call(job).await
                }
                .map_err(|e| E::from(DbError::from(e)))?;
                match ran {
                    (Err(e), _) => Err(E::from(DbError::from(e))),
                    (Ok(()), Some(result)) => result,
                    (Ok(()), None) => Err(E::from(DbError::Task("no result".into()))),
                }
            }
            Sql::Postgres(pg) => {
                let pg = pg.clone();
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let mut client = handle
                        .block_on(pg.pool().get())
                        .map_err(|e| E::from(DbError::Postgres(e.into())))?;
                    let tx = handle
                        .block_on(async {
                            let tx = client.transaction().await?;
                            if !durable {
                                // Visible at commit like any other, without waiting for
                                // the WAL flush: a crash of the server may lose the last
                                // entries, never half of one.
                                tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                                    .await?;
                            }
                            Ok::<_, proxy_optout_postgres::tokio_postgres::Error>(tx)
                        })
                        .map_err(|e| E::from(DbError::from(e)))?;
                    let mut pgtx = Pg {
                        tx,
                        handle: &handle,
                    };
                    let result = f(&mut pgtx);
                    if result.is_ok() {
                        handle
                            .block_on(pgtx.tx.commit())
                            .map_err(|e| E::from(DbError::from(e)))?;
                    }
                    result
                })
                .await
                .map_err(|e| E::from(DbError::Task(e.to_string())))?
            }
        }
    }
}

struct Lite<'c> {
    tx: &'c Transaction<'c>,
}

fn lite_params(params: &[Val]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|v| match v {
            Val::Null => rusqlite::types::Value::Null,
            Val::Int(i) => rusqlite::types::Value::Integer(*i),
            Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
        })
        .collect()
}

impl Tx for Lite<'_> {
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(lite_params(params)), |r| {
                (0..columns)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Integer(n) => Val::Int(n),
                            rusqlite::types::ValueRef::Text(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Real(f) => Val::Int(f as i64),
                            _ => Val::Null,
                        })
                    })
                    .collect::<rusqlite::Result<Row>>()
            })?
            .collect::<rusqlite::Result<Vec<Row>>>()?;
        Ok(rows)
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        let n = self
            .tx
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(lite_params(params)))?;
        Ok(n as u64)
    }

    fn lock(&mut self, _key: &str) -> Result<(), DbError> {
        Ok(())
    }
}

struct Pg<'h> {
    tx: proxy_optout_postgres::deadpool_postgres::Transaction<'h>,
    handle: &'h tokio::runtime::Handle,
}

/// `?1` → `$1`: the statements are written once, in SQLite's placeholders.
pub(crate) fn dollar(sql: &str) -> String {
    sql.replace('?', "$")
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Val::Int(i) => i.to_sql(ty, out),
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_row(row: &proxy_optout_postgres::tokio_postgres::Row) -> Result<Row, DbError> {
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            Ok(if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)?
                    .map_or(Val::Null, Val::Int)
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)?
                    .map_or(Val::Null, |n| Val::Int(n.into()))
            } else if *ty == Type::BOOL {
                row.try_get::<_, Option<bool>>(i)?
                    .map_or(Val::Null, |b| Val::Int(b.into()))
            } else {
                row.try_get::<_, Option<String>>(i)?
                    .map_or(Val::Null, Val::Text)
            })
        })
        .collect()
}

impl Tx for Pg<'_> {
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, DbError> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let sql = dollar(sql);
        let rows = self.handle.block_on(async {
            let stmt = self.tx.prepare_cached(&sql).await?;
            self.tx.query(&stmt, &refs).await
        })?;
        rows.iter().map(pg_row).collect()
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let sql = dollar(sql);
        Ok(self.handle.block_on(async {
            let stmt = self.tx.prepare_cached(&sql).await?;
            self.tx.execute(&stmt, &refs).await
        })?)
    }

    fn postgres(&self) -> bool {
        true
    }

    fn lock(&mut self, key: &str) -> Result<(), DbError> {
        self.execute(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext(?1))) l",
            &[key.into()],
        )?;
        Ok(())
    }
}
