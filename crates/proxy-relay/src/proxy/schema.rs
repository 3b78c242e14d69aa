//! Proxy's resources as tables, the same text on SQLite and PostgreSQL but for the identity
//! column. Times are unix seconds (Proxy's dates have second resolution); `seq` orders rows
//! and is the page token, so a page is an index range, never a scan.

/// The tables. `{SEQ}` is the dialect's identity column. Earlier builds indexed the
/// Interactions' outbound message SID for the status callbacks; a callback now names its
/// Interaction in its URL, so the index goes (every relayed message wrote one more random
/// page to keep it); the columns are unchanged, so the tables' version stays 3.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS proxy_relay_schema (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS proxy_services (
    seq                          {SEQ},
    sid                          TEXT NOT NULL UNIQUE,
    unique_name                  TEXT NOT NULL UNIQUE,
    default_ttl                  BIGINT NOT NULL DEFAULT 0,
    callback_url                 TEXT,
    intercept_callback_url       TEXT,
    out_of_session_callback_url  TEXT,
    geo_match_level              TEXT NOT NULL DEFAULT 'country',
    number_selection_behavior    TEXT NOT NULL DEFAULT 'prefer-sticky',
    chat_instance_sid            TEXT,
    date_created                 BIGINT NOT NULL,
    extensions                   TEXT,
    date_updated                 BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS proxy_phone_numbers (
    seq           {SEQ},
    sid           TEXT NOT NULL UNIQUE,
    service_sid   TEXT NOT NULL,
    phone_number  TEXT NOT NULL UNIQUE,
    is_reserved   BIGINT NOT NULL DEFAULT 0,
    date_created  BIGINT NOT NULL,
    stop_filtering TEXT NOT NULL DEFAULT 'on',
    date_updated  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_phone_numbers_by_service ON proxy_phone_numbers (service_sid, seq);
CREATE TABLE IF NOT EXISTS proxy_sessions (
    seq                    {SEQ},
    sid                    TEXT NOT NULL UNIQUE,
    service_sid            TEXT NOT NULL,
    unique_name            TEXT,
    status                 TEXT NOT NULL,
    closed_reason          TEXT,
    ttl                    BIGINT NOT NULL DEFAULT 0,
    mode                   TEXT NOT NULL,
    date_expiry            BIGINT,
    date_started           BIGINT,
    date_ended             BIGINT,
    date_last_interaction  BIGINT,
    expires_at             BIGINT,
    date_created           BIGINT NOT NULL,
    date_updated           BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS proxy_sessions_name ON proxy_sessions (service_sid, unique_name);
CREATE INDEX IF NOT EXISTS proxy_sessions_by_service ON proxy_sessions (service_sid, seq);
CREATE INDEX IF NOT EXISTS proxy_sessions_expiring ON proxy_sessions (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS proxy_participants (
    seq                   {SEQ},
    sid                   TEXT NOT NULL UNIQUE,
    session_sid           TEXT NOT NULL,
    service_sid           TEXT NOT NULL,
    identifier            TEXT NOT NULL,
    friendly_name         TEXT,
    proxy_identifier      TEXT NOT NULL,
    proxy_identifier_sid  TEXT NOT NULL,
    active                BIGINT NOT NULL,
    date_deleted          BIGINT,
    date_created          BIGINT NOT NULL,
    date_updated          BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_participants_by_session ON proxy_participants (session_sid, seq);
CREATE INDEX IF NOT EXISTS proxy_participants_history ON proxy_participants (service_sid, identifier, seq);
CREATE UNIQUE INDEX IF NOT EXISTS proxy_participants_active_pair
    ON proxy_participants (identifier, proxy_identifier) WHERE active = 1;
CREATE TABLE IF NOT EXISTS proxy_interactions (
    seq                        {SEQ},
    sid                        TEXT NOT NULL UNIQUE,
    session_sid                TEXT NOT NULL,
    service_sid                TEXT NOT NULL,
    data                       TEXT,
    type                       TEXT NOT NULL,
    inbound_participant_sid    TEXT,
    inbound_resource_sid       TEXT,
    inbound_resource_status    TEXT,
    inbound_resource_type      TEXT,
    outbound_participant_sid   TEXT,
    outbound_resource_sid      TEXT,
    outbound_resource_status   TEXT,
    outbound_resource_type     TEXT,
    via_participant_sid        TEXT,
    date_created               BIGINT NOT NULL,
    date_updated               BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_interactions_by_session ON proxy_interactions (session_sid, seq);
CREATE TABLE IF NOT EXISTS proxy_alerts (
    seq                {SEQ},
    sid                TEXT NOT NULL UNIQUE,
    error_code         TEXT NOT NULL,
    log_level          TEXT NOT NULL,
    alert_text         TEXT NOT NULL,
    request_method     TEXT,
    request_url        TEXT,
    request_variables  TEXT,
    resource_sid       TEXT,
    service_sid        TEXT,
    date_created       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_alerts_by_date ON proxy_alerts (date_created, seq);
DROP INDEX IF EXISTS proxy_interactions_by_outbound;
";

/// The tables' version this build writes. Version 1 was the `/v1/sessions` tables
/// (`relay_sessions`, `relay_participants`), which this build leaves alone; version 2 had
/// no alerts, no STOP filtering per number and no service extensions.
pub(crate) const VERSION: i64 = 3;

/// What turns version 2's tables into version 3's (the new tables come from `TABLES`).
pub(crate) const FROM_V2: &str =
    "ALTER TABLE proxy_phone_numbers ADD COLUMN stop_filtering TEXT NOT NULL DEFAULT 'on';
     ALTER TABLE proxy_services ADD COLUMN extensions TEXT;";

/// The tables in SQLite's dialect.
pub(crate) fn sqlite() -> String {
    TABLES.replace("{SEQ}", "INTEGER PRIMARY KEY")
}

/// The tables in PostgreSQL's dialect.
pub(crate) fn postgres() -> String {
    TABLES.replace(
        "{SEQ}",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
}

/// The route of a (sender, proxy number) pair for the pipeline: the session and the other
/// active participant. Unique: one active participant per (identifier, proxy number).
pub(crate) const ROUTE: &str = "SELECT p.session_sid, o.identifier, o.proxy_identifier
     FROM proxy_participants p
     LEFT JOIN proxy_participants o
       ON o.session_sid = p.session_sid AND o.active = 1 AND o.sid <> p.sid
     WHERE p.identifier = ?1 AND p.proxy_identifier = ?2 AND p.active = 1
     LIMIT 1";
