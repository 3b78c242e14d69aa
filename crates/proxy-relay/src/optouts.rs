//! `proxy-relay optouts export|import`: the opt-out list and its history out of the
//! configured database, streamed a page at a time, and an existing list (from Twilio, or any
//! provider) into it, each row recorded with source `import`.

use std::io::{Read, Write};

use proxy_optout::{
    validate_identifier, AsyncHistoryStore, Change, ChangeSource, HistoryEntry, HistoryQuery,
    HistoryStore, IdentifierError, LedgerKey, OptState,
};
use proxy_optout_postgres::PgStore;
use proxy_optout_sqlite::SqliteStore;

use crate::proxy::time;

/// How many entries an export reads per page, and an import writes per transaction.
pub const PAGE: usize = 1000;

/// The most bad rows an import names before it stops reading.
pub const MAX_REPORTED: usize = 50;

/// A failure of an export or an import.
///
/// ```
/// let e = proxy_relay::OptOutsError::Rows(vec![proxy_relay::BadRow { line: 3, reason: "no participant".into() }]);
/// assert_eq!(e.to_string(), "1 bad row(s), nothing imported: line 3: no participant");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OptOutsError {
    /// The SQLite database failed (it is held by a running server: stop it, or use the admin
    /// API).
    #[error("sqlite: {0}")]
    Sqlite(#[from] proxy_optout_sqlite::StoreError),
    /// The PostgreSQL database failed.
    #[error("postgres: {0}")]
    Postgres(#[from] proxy_optout_postgres::StoreError),
    /// Writing the export or reading the import failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The import's header names no participant column, or a column twice.
    #[error("the import's header {0}")]
    Header(String),
    /// Rows of the import are bad; nothing was imported.
    #[error("{} bad row(s), nothing imported: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rows(Vec<BadRow>),
    /// A filter is not valid.
    #[error("{0}")]
    Filter(String),
}

/// A row an import refused, by its line in the file (the header is line 1).
///
/// ```
/// let r = proxy_relay::BadRow { line: 7, reason: "participant \"\" is empty".into() };
/// assert_eq!(r.to_string(), "line 7: participant \"\" is empty");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BadRow {
    /// The line (1 is the header).
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// The format of an export.
///
/// ```
/// assert_eq!(proxy_relay::ExportFormat::default(), proxy_relay::ExportFormat::Csv);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A header, then one row per entry; times in UTC as `2026-12-02T13:45:00.123Z`.
    #[default]
    Csv,
    /// One JSON object per line: the library's `HistoryEntry`, times in Unix milliseconds.
    Jsonl,
}

/// What an export holds.
///
/// ```
/// assert_eq!(proxy_relay::ExportWhat::default(), proxy_relay::ExportWhat::Optouts);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportWhat {
    /// Every pair opted out now, each with the entry that opted it out.
    #[default]
    Optouts,
    /// Every recorded change.
    History,
}

/// The CSV columns of an export, in order.
pub const COLUMNS: [&str; 12] = [
    "seq",
    "scope",
    "participant",
    "state",
    "source",
    "keyword",
    "text",
    "message_id",
    "rule_set",
    "received_at",
    "recorded_at",
    "confirmed_at",
];

/// The configured database, as the stores see it.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum OptOutDb {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
    /// The SQLite file a running server holds, reached through its database thread.
    Served(proxy_optout_host::SqliteLedger),
}

impl OptOutDb {
    /// Opens `database` (a path or a `postgres://` URL, as `--database` takes), migrating it
    /// as the server would.
    ///
    /// # Errors
    ///
    /// [`OptOutsError`] when it cannot be opened (on SQLite: also while a server holds it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let db = proxy_relay::OptOutDb::open(dir.path().join("r.db").to_str().unwrap()).await?;
    /// assert!(matches!(db, proxy_relay::OptOutDb::Sqlite(_)));
    /// # Ok(()) }
    /// ```
    pub async fn open(database: &str) -> Result<OptOutDb, OptOutsError> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            Ok(OptOutDb::Postgres(PgStore::connect(database).await?))
        } else {
            Ok(OptOutDb::Sqlite(SqliteStore::open(database)?))
        }
    }

    /// The database a running server uses (for its admin API).
    pub(crate) fn of(db: &crate::Db) -> OptOutDb {
        match &*db.sql() {
            crate::backend::sql::Sql::Sqlite(ledger) => OptOutDb::Served(ledger.clone()),
            crate::backend::sql::Sql::Postgres(pg) => OptOutDb::Postgres(pg.clone()),
        }
    }

    pub(crate) async fn page(
        &self,
        query: &HistoryQuery<'_>,
    ) -> Result<Vec<HistoryEntry>, OptOutsError> {
        Ok(match self {
            OptOutDb::Sqlite(s) => AsyncHistoryStore::history(s, query).await?,
            OptOutDb::Postgres(p) => AsyncHistoryStore::history(p, query).await?,
            OptOutDb::Served(ledger) => {
                let owned = query.to_owned();
                ledger
                    .call(move |store| HistoryStore::history(store, &owned.as_query()))
                    .await
                    .map_err(served)??
            }
        })
    }

    async fn record_changes(&self, changes: &[Change<'_>]) -> Result<u64, OptOutsError> {
        Ok(match self {
            OptOutDb::Sqlite(s) => {
                let s = s.clone();
                let owned: Vec<HistoryEntry> =
                    changes.iter().map(|c| HistoryEntry::new(0, c, 0)).collect();
                tokio::task::spawn_blocking(move || {
                    let changes: Vec<Change<'_>> =
                        owned.iter().map(HistoryEntry::as_change).collect();
                    s.record_changes(&changes)
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?? as u64
            }
            OptOutDb::Postgres(p) => p.record_changes(changes).await?,
            OptOutDb::Served(ledger) => {
                let owned: Vec<HistoryEntry> =
                    changes.iter().map(|c| HistoryEntry::new(0, c, 0)).collect();
                ledger
                    .call_durable(move |store| {
                        let changes: Vec<Change<'_>> =
                            owned.iter().map(HistoryEntry::as_change).collect();
                        store.record_changes(&changes)
                    })
                    .await
                    .map_err(served)?? as u64
            }
        })
    }
}

fn served(e: proxy_optout_host::LedgerError) -> OptOutsError {
    OptOutsError::Io(std::io::Error::other(e.to_string()))
}

/// What an export is filtered by. Times are Unix milliseconds.
///
/// ```
/// let f = proxy_relay::ExportFilter { scope: Some("+15550000100".into()), ..Default::default() };
/// # let _ = f;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    /// Only this proxy number (or service).
    pub scope: Option<String>,
    /// Only this participant.
    pub participant: Option<String>,
    /// Only entries recorded at or after this time.
    pub since: Option<u64>,
    /// Only entries recorded before this time.
    pub until: Option<u64>,
    /// Only entries that set this state (history exports).
    pub state: Option<OptState>,
}

/// Parses a time as the commands take it: `2026-12-02T13:45:00Z` (fractions and `+00:00`
/// accepted), `2026-12-02` (midnight UTC), or Unix milliseconds.
///
/// ```
/// assert_eq!(proxy_relay::parse_time("1970-01-02"), Some(86_400_000));
/// assert_eq!(proxy_relay::parse_time("1970-01-01T00:00:01Z"), Some(1000));
/// assert_eq!(proxy_relay::parse_time("1500"), Some(1500));
/// assert_eq!(proxy_relay::parse_time("yesterday"), None);
/// ```
#[must_use]
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let secs = match text.len() {
        10 => time::parse(&format!("{text}T00:00:00Z"))?,
        _ => time::parse(text)?,
    };
    let frac = text
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map_or(0, |f| {
            let digits: String = f.chars().take_while(char::is_ascii_digit).take(3).collect();
            format!("{digits:0<3}").parse::<u64>().unwrap_or(0)
        });
    u64::try_from(secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(frac)
}

/// Unix milliseconds as `2026-12-02T13:45:00.123Z`.
///
/// ```
/// assert_eq!(proxy_relay::format_time(86_400_123), "1970-01-02T00:00:00.123Z");
/// ```
#[must_use]
pub fn format_time(ms: u64) -> String {
    let secs = time::format(i64::try_from(ms / 1000).unwrap_or(i64::MAX));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms % 1000)
}

fn csv_row(e: &HistoryEntry) -> [String; 12] {
    let time = |t: Option<u64>| t.map(format_time).unwrap_or_default();
    [
        e.seq.to_string(),
        e.scope.clone(),
        e.participant.clone(),
        e.state.as_str().into(),
        e.source.as_str().into(),
        e.keyword.clone().unwrap_or_default(),
        e.text.clone().unwrap_or_default(),
        e.message_id.clone().unwrap_or_default(),
        e.rule_set
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        time(e.received_at),
        time(Some(e.recorded_at)),
        time(e.confirmed_at),
    ]
}

/// Writes `what` from `db` to `out` in `format`, a page of [`PAGE`] entries at a time (so
/// memory stays constant whatever the size), and returns how many entries it wrote.
///
/// # Errors
///
/// [`OptOutsError`] when the database or the writer fails.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use proxy_relay::{export, ExportFilter, ExportFormat, ExportWhat, OptOutDb};
/// let dir = tempfile::tempdir()?;
/// let db = OptOutDb::open(dir.path().join("r.db").to_str().unwrap()).await?;
/// let mut out = Vec::new();
/// let n = export(&db, ExportWhat::History, &ExportFilter::default(), ExportFormat::Csv, &mut out).await?;
/// assert_eq!(n, 0);
/// assert!(String::from_utf8(out)?.starts_with("seq,scope,participant,state,source"));
/// # Ok(()) }
/// ```
pub async fn export(
    db: &OptOutDb,
    what: ExportWhat,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<u64, OptOutsError> {
    let query = query_for(what, filter);
    out.write_all(&render_header(format)?)?;
    let (mut written, mut after) = (0, 0);
    loop {
        let page = db.page(&query.after(after)).await?;
        out.write_all(&render_page(format, &page)?)?;
        written += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}

/// The query behind an export of `what` under `filter`, a page of [`PAGE`].
pub(crate) fn query_for(what: ExportWhat, filter: &ExportFilter) -> HistoryQuery<'_> {
    let mut query = HistoryQuery::new()
        .recorded_between(filter.since, filter.until)
        .limit(PAGE);
    if let Some(s) = &filter.scope {
        query = query.scope(s);
    }
    if let Some(p) = &filter.participant {
        query = query.participant(p);
    }
    match (what, filter.state) {
        (ExportWhat::Optouts, _) => query.current_only(true).state(OptState::OptedOut),
        (ExportWhat::History, Some(state)) => query.state(state),
        (ExportWhat::History, None) => query,
    }
}

/// What an export starts with: CSV's header line, nothing for JSON Lines.
pub(crate) fn render_header(format: ExportFormat) -> Result<Vec<u8>, OptOutsError> {
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(COLUMNS).map_err(csv_error)?;
            w.into_inner().map_err(|e| OptOutsError::Io(e.into_error()))
        }
        ExportFormat::Jsonl => Ok(Vec::new()),
    }
}

/// One page of entries, rendered.
pub(crate) fn render_page(
    format: ExportFormat,
    entries: &[HistoryEntry],
) -> Result<Vec<u8>, OptOutsError> {
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for e in entries {
                w.write_record(csv_row(e)).map_err(csv_error)?;
            }
            w.into_inner().map_err(|e| OptOutsError::Io(e.into_error()))
        }
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for e in entries {
                serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
                out.push(b'\n');
            }
            Ok(out)
        }
    }
}

fn csv_error(e: csv::Error) -> OptOutsError {
    OptOutsError::Io(std::io::Error::other(e))
}

/// What an import did.
///
/// ```
/// let r = proxy_relay::ImportReport { rows: 3, recorded: 2, unchanged: 1 };
/// assert_eq!(r.rows, r.recorded + r.unchanged);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read (the header aside).
    pub rows: u64,
    /// Rows that opted a pair out.
    pub recorded: u64,
    /// Rows whose pair was opted out already (a re-run finds every row here).
    pub unchanged: u64,
}

/// One validated row.
struct Row {
    scope: String,
    participant: String,
    at: Option<u64>,
}

/// The column positions the header names.
struct Header {
    participant: usize,
    scope: Option<usize>,
    at: Option<usize>,
}

fn header(record: &csv::StringRecord, scope_given: bool) -> Result<Header, OptOutsError> {
    let find = |names: &[&str]| -> Result<Option<usize>, OptOutsError> {
        let found: Vec<usize> = record
            .iter()
            .enumerate()
            .filter(|(_, h)| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [i] => Ok(Some(*i)),
            _ => Err(OptOutsError::Header(format!(
                "names a column for {} more than once",
                names[0]
            ))),
        }
    };
    let participant = find(&["participant", "phone_number"])?.ok_or_else(|| {
        OptOutsError::Header("has no participant (or phone_number) column".into())
    })?;
    let scope = find(&["proxy_number", "scope"])?;
    match (scope, scope_given) {
        (None, false) => Err(OptOutsError::Header(
            "has no proxy_number (or scope) column: give --scope for a list without one".into(),
        )),
        (Some(_), true) => Err(OptOutsError::Header(
            "has a proxy_number column and --scope was given: choose one".into(),
        )),
        _ => Ok(Header {
            participant,
            scope,
            at: find(&["opted_out_at", "timestamp", "date"])?,
        }),
    }
}

fn row(record: &csv::StringRecord, h: &Header, scope: Option<&str>) -> Result<Row, String> {
    let field = |i: usize| record.get(i).unwrap_or("").trim();
    let participant = field(h.participant);
    let scope = h.scope.map_or(scope.unwrap_or(""), field);
    let named = |e: IdentifierError| e.to_string();
    validate_identifier("participant", participant).map_err(named)?;
    validate_identifier("proxy number", scope).map_err(named)?;
    let at = match h.at.map(field) {
        None | Some("") => None,
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            format!("time {t:?} is not a date, an ISO 8601 UTC time or Unix milliseconds")
        })?),
    };
    Ok(Row {
        scope: scope.to_owned(),
        participant: participant.to_owned(),
        at,
    })
}

/// Imports an opted-out list from CSV: a header naming `participant` (or `phone_number`),
/// `proxy_number` (or `scope`) unless `scope` is given for every row, and optionally
/// `opted_out_at` (or `timestamp`, `date`); other columns are ignored.
///
/// Every row is checked before anything is written: with a bad row (named by its line, up
/// to [`MAX_REPORTED`] of them) nothing is imported. Then rows are recorded [`PAGE`] to a
/// transaction with source `import`; a pair opted out already is left alone, so a re-run
/// records nothing new, and after a failure part-way (whole batches written) only the rest.
///
/// # Errors
///
/// [`OptOutsError::Header`], [`OptOutsError::Rows`], or the database's error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use proxy_relay::{import, OptOutDb};
/// let dir = tempfile::tempdir()?;
/// let db = OptOutDb::open(dir.path().join("r.db").to_str().unwrap()).await?;
/// let csv = "phone_number,proxy_number,opted_out_at\n+15551110001,+15550000100,2025-03-14\n";
/// assert_eq!(import(&db, csv.as_bytes(), None).await?.recorded, 1);
/// assert_eq!(import(&db, csv.as_bytes(), None).await?.unchanged, 1);
/// assert!(import(&db, "participant\n+1A\n".as_bytes(), None).await.is_err()); // no scope
/// # Ok(()) }
/// ```
pub async fn import(
    db: &OptOutDb,
    input: impl Read,
    scope: Option<&str>,
) -> Result<ImportReport, OptOutsError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let h = header(
        &reader.headers().map_err(csv_error)?.clone(),
        scope.is_some(),
    )?;
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        match row(&record, &h, scope) {
            Ok(r) => rows.push(r),
            Err(reason) => {
                bad.push(BadRow { line, reason });
                if bad.len() == MAX_REPORTED {
                    break;
                }
            }
        }
    }
    if !bad.is_empty() {
        return Err(OptOutsError::Rows(bad));
    }
    let mut report = ImportReport {
        rows: rows.len() as u64,
        ..ImportReport::default()
    };
    for chunk in rows.chunks(PAGE) {
        let changes: Vec<Change<'_>> = chunk
            .iter()
            .map(|r| {
                let c = Change::new(
                    LedgerKey::new(&r.scope, &r.participant),
                    OptState::OptedOut,
                    ChangeSource::Import,
                );
                r.at.map_or(c, |t| c.with_received_at(t))
            })
            .collect();
        report.recorded += db.record_changes(&changes).await?;
    }
    report.unchanged = report.rows - report.recorded;
    Ok(report)
}
