//! A store method's writes as one unit: its own transaction when the connection has none
//! open, a savepoint inside the caller's when it has.
//!
//! A host that runs many calls inside one transaction of its own (to pay one commit for all
//! of them) can then call the store's methods unchanged: each stays all-or-nothing, and
//! none tries to begin a transaction inside the open one, which SQLite refuses.

use std::ops::Deref;

use rusqlite::{Connection, Savepoint, Transaction, TransactionBehavior};

pub(crate) enum Atomic<'c> {
    Own(Transaction<'c>),
    Nested(Savepoint<'c>),
    /// Inside the caller's transaction, for a method that writes with one statement: SQLite
    /// makes a statement atomic by itself, and a savepoint would copy every page it touches
    /// to a sub-journal first.
    Joined(&'c Connection),
}

impl<'c> Atomic<'c> {
    /// `behavior` applies only to a transaction of its own: inside the caller's, the caller
    /// took the locks it needs.
    pub(crate) fn begin(
        conn: &'c mut Connection,
        behavior: TransactionBehavior,
    ) -> rusqlite::Result<Atomic<'c>> {
        if conn.is_autocommit() {
            conn.transaction_with_behavior(behavior).map(Atomic::Own)
        } else {
            conn.savepoint().map(Atomic::Nested)
        }
    }

    /// As [`begin`](Self::begin), for a method whose reads lead to at most one write
    /// statement.
    pub(crate) fn begin_one_write(
        conn: &'c mut Connection,
        behavior: TransactionBehavior,
    ) -> rusqlite::Result<Atomic<'c>> {
        if conn.is_autocommit() {
            conn.transaction_with_behavior(behavior).map(Atomic::Own)
        } else {
            Ok(Atomic::Joined(conn))
        }
    }

    /// Commits its own transaction, or releases the savepoint into the caller's. Dropped
    /// without this, either rolls back.
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        match self {
            Atomic::Own(tx) => tx.commit(),
            Atomic::Nested(sp) => sp.commit(),
            Atomic::Joined(_) => Ok(()),
        }
    }
}

impl Deref for Atomic<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Atomic::Own(tx) => tx,
            Atomic::Nested(sp) => sp,
            Atomic::Joined(c) => c,
        }
    }
}
