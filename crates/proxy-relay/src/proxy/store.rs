//! Proxy's resources over the session tables: each operation one transaction, written once
//! for both databases over [`Tx`]. What a rule refuses is an [`ApiError`] with Proxy's code;
//! nothing is written then.

use serde_json::{json, Value};

use super::error::ApiError;
use super::time;
use crate::backend::sql::{Row, Tx, Val};
use crate::backend::DbError;
use crate::sessions::{proxy_for, strip_channel};

/// What every rendered resource needs: where this server is, and whose account it plays.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// The public base URL, no trailing slash.
    pub(crate) base: String,
    /// The account SID shown in every resource.
    pub(crate) account: String,
}

impl Ctx {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.base)
    }
    pub(crate) fn message_url(&self, sid: &str) -> String {
        format!(
            "https://api.twilio.com/2010-04-01/Accounts/{}/Messages/{sid}.json",
            self.account
        )
    }
}

/// The form's fields, PascalCase, a list repeated.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fields(pub(crate) Vec<(String, String)>);

impl Fields {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.len() > max => Err(ApiError::invalid(format!(
                "{name} is longer than {max} bytes ({})",
                v.len()
            ))),
            Some(v) => Ok(Some(v.to_owned())),
        }
    }
    fn seconds(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("{name} {v:?} is not a whole number of seconds"))
                    })
            })
            .transpose()
    }
    fn date(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                time::parse(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name} {v:?} is not a date like 2026-12-02T13:45:00Z"
                    ))
                })
            })
            .transpose()
    }
    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid(format!(
                    "{name} {v:?} is not true or false"
                ))),
            })
            .transpose()
    }
    fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} {v:?} is not one of {}",
                allowed.join(", ")
            ))),
        }
    }
}

/// A page request: `PageSize` (at most 100, default 50), `Page`, and the token of the last
/// row of the previous page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageReq {
    pub(crate) size: i64,
    pub(crate) page: i64,
    pub(crate) after: Option<i64>,
}

/// One page: its rows, and the token of the next page when there is one.
pub(crate) struct Page {
    pub(crate) rows: Vec<Value>,
    pub(crate) next: Option<i64>,
}

pub(crate) fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get(i).and_then(Val::owned_text)
}
fn int(row: &Row, i: usize) -> Option<i64> {
    row.get(i).and_then(Val::int)
}
fn date(row: &Row, i: usize) -> Value {
    int(row, i).map_or(Value::Null, |s| Value::String(time::format(s)))
}
fn opt(row: &Row, i: usize) -> Value {
    text(row, i).map_or(Value::Null, Value::String)
}

fn conflict(code: u32, message: impl Into<String>) -> ApiError {
    ApiError::new(400, code, message)
}

/// A page of `select` (which ends in `WHERE … AND seq > ?N` style is not needed: the
/// caller's statement takes the parent id as ?1, the token as ?2, the limit as ?3).
fn page(
    tx: &mut dyn Tx,
    select: &str,
    parent: &str,
    req: PageReq,
    descending: bool,
    render: impl Fn(&Row) -> Value,
) -> Result<Page, DbError> {
    let (cmp, order) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let after = req
        .after
        .unwrap_or(if descending { i64::MAX } else { i64::MIN });
    let sql = format!("{select} AND seq {cmp} ?2 ORDER BY seq {order} LIMIT ?3");
    let mut rows = tx.query(&sql, &[parent.into(), after.into(), (req.size + 1).into()])?;
    let next = if rows.len() as i64 > req.size {
        rows.truncate(req.size as usize);
        rows.last().and_then(|r| int(r, 0))
    } else {
        None
    };
    Ok(Page {
        rows: rows.iter().map(render).collect(),
        next,
    })
}

// ---------------------------------------------------------------- services

const SERVICE: &str =
    "SELECT seq, sid, unique_name, default_ttl, callback_url, intercept_callback_url,
    out_of_session_callback_url, geo_match_level, number_selection_behavior, chat_instance_sid,
    date_created, date_updated, extensions FROM proxy_services";

fn service_json(ctx: &Ctx, r: &Row) -> Value {
    let sid = text(r, 1).unwrap_or_default();
    let url = ctx.url(&format!("Services/{sid}"));
    json!({
        "sid": sid,
        "unique_name": opt(r, 2),
        "account_sid": ctx.account,
        "chat_instance_sid": opt(r, 9),
        "callback_url": opt(r, 4),
        "default_ttl": int(r, 3).unwrap_or(0),
        "number_selection_behavior": opt(r, 8),
        "geo_match_level": opt(r, 7),
        "intercept_callback_url": opt(r, 5),
        "out_of_session_callback_url": opt(r, 6),
        "date_created": date(r, 10),
        "date_updated": date(r, 11),
        // Beyond Proxy: the library's extensions, `null` when none is set.
        "extensions": text(r, 12)
            .and_then(|c| serde_json::from_str::<Value>(&c).ok())
            .unwrap_or(Value::Null),
        "links": {
            "sessions": format!("{url}/Sessions"),
            "phone_numbers": format!("{url}/PhoneNumbers"),
        },
        "url": url,
    })
}

/// A service by SID or unique name: (sid, row).
fn find_service(tx: &mut dyn Tx, id: &str) -> Result<(String, Row), ApiError> {
    let row = tx
        .row(
            &format!("{SERVICE} WHERE sid = ?1 OR unique_name = ?1"),
            &[id.into()],
        )?
        .ok_or_else(|| ApiError::not_found(&format!("/Services/{id}")))?;
    Ok((text(&row, 1).unwrap_or_default(), row))
}

const SELECTION: &[&str] = &["prefer-sticky", "avoid-sticky"];
const GEO: &[&str] = &["area-code", "overlay", "radius", "country"];
const URLS: [(&str, &str); 3] = [
    ("CallbackUrl", "callback_url"),
    ("InterceptCallbackUrl", "intercept_callback_url"),
    ("OutOfSessionCallbackUrl", "out_of_session_callback_url"),
];

fn checked_url(fields: &Fields, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = fields.text(name, 2048)? else {
        return Ok(None);
    };
    if !(v.is_empty() || v.starts_with("http://") || v.starts_with("https://")) {
        return Err(ApiError::invalid(format!(
            "{name} {v:?} is not an http(s) URL"
        )));
    }
    Ok(Some(v))
}

pub(crate) fn create_service(tx: &mut dyn Tx, ctx: &Ctx, f: &Fields) -> Result<Value, ApiError> {
    let name = f
        .text("UniqueName", 191)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("UniqueName is required"))?;
    if name.starts_with("KS") && name.len() == 34 {
        return Err(ApiError::invalid(format!(
            "UniqueName {name:?} looks like a Service SID"
        )));
    }
    tx.lock("proxy_services")?;
    if tx
        .row(
            "SELECT 1 FROM proxy_services WHERE unique_name = ?1",
            &[name.as_str().into()],
        )?
        .is_some()
    {
        return Err(conflict(
            80602,
            format!("UniqueName {name:?} is already taken"),
        ));
    }
    let sid = new_sid("KS");
    let now = time::now();
    tx.execute(
        "INSERT INTO proxy_services (sid, unique_name, date_created, date_updated) VALUES (?1, ?2, ?3, ?3)",
        &[sid.as_str().into(), name.into(), now.into()],
    )?;
    update_service(tx, ctx, &sid, f)
}

pub(crate) fn update_service(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    id: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (sid, row) = find_service(tx, id)?;
    let mut sets: Vec<(&str, Val)> = Vec::new();
    let current = super::extensions::Extensions::from_column(text(&row, 12).as_deref());
    if let Some(e) = current.updated(f)? {
        sets.push(("extensions", e.to_column().into()));
    }
    if let Some(ttl) = f.seconds("DefaultTtl")? {
        sets.push(("default_ttl", ttl.into()));
    }
    for (field, column) in URLS {
        if let Some(url) = checked_url(f, field)? {
            sets.push((column, Some(url).filter(|u| !u.is_empty()).into()));
        }
    }
    if let Some(g) = f.one_of("GeoMatchLevel", GEO)? {
        sets.push(("geo_match_level", g.into()));
    }
    if let Some(b) = f.one_of("NumberSelectionBehavior", SELECTION)? {
        sets.push(("number_selection_behavior", b.into()));
    }
    if let Some(c) = f.text("ChatInstanceSid", 34)? {
        sets.push(("chat_instance_sid", c.into()));
    }
    if let Some(name) = f.text("UniqueName", 191)?.filter(|n| !n.is_empty()) {
        if tx
            .row(
                "SELECT 1 FROM proxy_services WHERE unique_name = ?1 AND sid <> ?2",
                &[name.as_str().into(), sid.as_str().into()],
            )?
            .is_some()
        {
            return Err(conflict(
                80602,
                format!("UniqueName {name:?} is already taken"),
            ));
        }
        sets.push(("unique_name", name.into()));
    }
    sets.push(("date_updated", time::now().into()));
    set(tx, "proxy_services", &sid, sets)?;
    let (_, row) = find_service(tx, &sid)?;
    Ok(service_json(ctx, &row))
}

/// `UPDATE table SET a = ?2, b = ?3 … WHERE sid = ?1`.
fn set(tx: &mut dyn Tx, table: &str, sid: &str, sets: Vec<(&str, Val)>) -> Result<(), DbError> {
    let assignments: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = ?{}", i + 2))
        .collect();
    let mut params = vec![Val::from(sid)];
    params.extend(sets.into_iter().map(|(_, v)| v));
    tx.execute(
        &format!(
            "UPDATE {table} SET {} WHERE sid = ?1",
            assignments.join(", ")
        ),
        &params,
    )?;
    Ok(())
}

pub(crate) fn fetch_service(tx: &mut dyn Tx, ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let (_, row) = find_service(tx, id)?;
    Ok(service_json(ctx, &row))
}

pub(crate) fn list_services(tx: &mut dyn Tx, ctx: &Ctx, req: PageReq) -> Result<Page, ApiError> {
    Ok(page(
        tx,
        &format!("{SERVICE} WHERE ?1 = ?1"),
        "",
        req,
        false,
        |r| service_json(ctx, r),
    )?)
}

pub(crate) fn delete_service(tx: &mut dyn Tx, id: &str) -> Result<(), ApiError> {
    let (sid, _) = find_service(tx, id)?;
    for table in [
        "proxy_interactions",
        "proxy_participants",
        "proxy_sessions",
        "proxy_phone_numbers",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE service_sid = ?1"),
            &[sid.as_str().into()],
        )?;
    }
    tx.execute("DELETE FROM proxy_services WHERE sid = ?1", &[sid.into()])?;
    Ok(())
}

// ---------------------------------------------------------------- phone numbers

const NUMBER: &str = "SELECT n.seq, n.sid, n.service_sid, n.phone_number, n.is_reserved,
    n.date_created, n.date_updated,
    (SELECT count(DISTINCT p.session_sid) FROM proxy_participants p
      WHERE p.active = 1 AND p.proxy_identifier_sid = n.sid) AS in_use,
    n.stop_filtering
    FROM proxy_phone_numbers n";

fn iso_country(number: &str) -> Value {
    // Only what a calling code settles on its own; others are unknown here.
    match number {
        n if n.starts_with("+1") => json!("US"),
        n if n.starts_with("+44") => json!("GB"),
        n if n.starts_with("+33") => json!("FR"),
        n if n.starts_with("+34") => json!("ES"),
        n if n.starts_with("+49") => json!("DE"),
        _ => Value::Null,
    }
}

fn number_json(ctx: &Ctx, r: &Row) -> Value {
    let (sid, service) = (
        text(r, 1).unwrap_or_default(),
        text(r, 2).unwrap_or_default(),
    );
    let number = text(r, 3).unwrap_or_default();
    json!({
        "sid": sid,
        "account_sid": ctx.account,
        "service_sid": service,
        "date_created": date(r, 5),
        "date_updated": date(r, 6),
        "phone_number": number,
        "friendly_name": number,
        "iso_country": iso_country(&number),
        "capabilities": {"sms_inbound": true, "sms_outbound": true, "mms_inbound": true,
                         "mms_outbound": true, "voice_inbound": false, "voice_outbound": false,
                         "fax_inbound": false, "fax_outbound": false, "restriction_fax_domestic": null,
                         "restriction_sms_domestic": null, "restriction_voice_domestic": null,
                         "restriction_mms_domestic": null, "sip_trunking": false},
        "url": ctx.url(&format!("Services/{service}/PhoneNumbers/{sid}")),
        "is_reserved": int(r, 4).unwrap_or(0) != 0,
        "in_use": int(r, 7).unwrap_or(0),
        // Beyond Proxy: the Messaging side's STOP filtering for this number (SPEC §6).
        "stop_filtering": text(r, 8).unwrap_or_else(|| "on".into()),
    })
}

/// `StopFiltering`'s values (an extension: Proxy leaves it to the Messaging side).
const FILTERING: &[&str] = &["on", "off"];

fn find_number(tx: &mut dyn Tx, service: &str, id: &str) -> Result<Row, ApiError> {
    tx.row(
        &format!("{NUMBER} WHERE n.service_sid = ?1 AND (n.sid = ?2 OR n.phone_number = ?2)"),
        &[service.into(), id.into()],
    )?
    .ok_or_else(|| ApiError::not_found(&format!("/Services/{service}/PhoneNumbers/{id}")))
}

pub(crate) fn add_number(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    let number = match (f.get("PhoneNumber"), f.get("Sid")) {
        (Some(n), _) => n.trim().to_owned(),
        (None, Some(sid)) => {
            return Err(ApiError::invalid(format!(
                "Sid {sid:?}: this server has no IncomingPhoneNumbers to look it up in; give PhoneNumber (E.164) instead"
            )))
        }
        (None, None) => return Err(ApiError::invalid("PhoneNumber or Sid is required")),
    };
    proxy_optout::validate_identifier("PhoneNumber", &number)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if !number.starts_with('+')
        || number.len() < 4
        || !number[1..].bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::invalid(format!(
            "PhoneNumber {number:?} is not an E.164 number"
        )));
    }
    tx.lock("proxy_phone_numbers")?;
    if let Some(owner) = tx.row(
        "SELECT service_sid FROM proxy_phone_numbers WHERE phone_number = ?1",
        &[number.as_str().into()],
    )? {
        let owner = text(&owner, 0).unwrap_or_default();
        return Err(if owner == service {
            conflict(80104, format!("{number} is already in this service's pool"))
        } else {
            conflict(
                80101,
                format!("{number} already belongs to service {owner}"),
            )
        });
    }
    let sid = new_sid("PN");
    let now = time::now();
    tx.execute(
        "INSERT INTO proxy_phone_numbers (sid, service_sid, phone_number, is_reserved, stop_filtering, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        &[
            sid.as_str().into(),
            service.as_str().into(),
            number.into(),
            f.boolean("IsReserved")?.unwrap_or(false).into(),
            f.one_of("StopFiltering", FILTERING)?
                .unwrap_or_else(|| "on".into())
                .into(),
            now.into(),
        ],
    )?;
    Ok(number_json(ctx, &find_number(tx, &service, &sid)?))
}

pub(crate) fn fetch_number(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    Ok(number_json(ctx, &find_number(tx, &service, id)?))
}

pub(crate) fn update_number(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    id: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    let sid = text(&find_number(tx, &service, id)?, 1).unwrap_or_default();
    if let Some(reserved) = f.boolean("IsReserved")? {
        set(
            tx,
            "proxy_phone_numbers",
            &sid,
            vec![
                ("is_reserved", reserved.into()),
                ("date_updated", time::now().into()),
            ],
        )?;
    }
    if let Some(filtering) = f.one_of("StopFiltering", FILTERING)? {
        set(
            tx,
            "proxy_phone_numbers",
            &sid,
            vec![
                ("stop_filtering", filtering.into()),
                ("date_updated", time::now().into()),
            ],
        )?;
    }
    Ok(number_json(ctx, &find_number(tx, &service, &sid)?))
}

pub(crate) fn list_numbers(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    req: PageReq,
) -> Result<Page, ApiError> {
    let (service, _) = find_service(tx, service)?;
    Ok(page(
        tx,
        &format!("{NUMBER} WHERE n.service_sid = ?1"),
        &service,
        req,
        false,
        |r| number_json(ctx, r),
    )?)
}

pub(crate) fn remove_number(tx: &mut dyn Tx, service: &str, id: &str) -> Result<(), ApiError> {
    let (service, _) = find_service(tx, service)?;
    let row = find_number(tx, &service, id)?;
    if int(&row, 7).unwrap_or(0) > 0 {
        return Err(conflict(
            80611,
            format!(
                "{} is in use by {} active session(s); close them first",
                text(&row, 3).unwrap_or_default(),
                int(&row, 7).unwrap_or(0)
            ),
        ));
    }
    tx.execute(
        "DELETE FROM proxy_phone_numbers WHERE sid = ?1",
        &[text(&row, 1).into()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- sessions

const SESSION: &str = "SELECT seq, sid, service_sid, unique_name, status, closed_reason, ttl, mode,
    date_expiry, date_started, date_ended, date_last_interaction, date_created, date_updated
    FROM proxy_sessions";

fn session_json(ctx: &Ctx, r: &Row) -> Value {
    let (sid, service) = (
        text(r, 1).unwrap_or_default(),
        text(r, 2).unwrap_or_default(),
    );
    let url = ctx.url(&format!("Services/{service}/Sessions/{sid}"));
    json!({
        "sid": sid,
        "service_sid": service,
        "account_sid": ctx.account,
        "date_started": date(r, 9),
        "date_ended": date(r, 10),
        "date_last_interaction": date(r, 11),
        "date_expiry": date(r, 8),
        "unique_name": opt(r, 3),
        "status": opt(r, 4),
        "closed_reason": opt(r, 5),
        "ttl": int(r, 6).unwrap_or(0),
        "mode": opt(r, 7),
        "date_created": date(r, 12),
        "date_updated": date(r, 13),
        "url": url,
        "links": {
            "interactions": format!("{url}/Interactions"),
            "participants": format!("{url}/Participants"),
        },
    })
}

fn find_session(tx: &mut dyn Tx, service: &str, id: &str) -> Result<Row, ApiError> {
    tx.row(
        &format!("{SESSION} WHERE service_sid = ?1 AND (sid = ?2 OR unique_name = ?2)"),
        &[service.into(), id.into()],
    )?
    .ok_or_else(|| ApiError::not_found(&format!("/Services/{service}/Sessions/{id}")))
}

const MODES: &[&str] = &["message-only", "voice-only", "voice-and-message"];
const ACTIVE: [&str; 2] = ["open", "in-progress"];

/// The moment a session expires: its `DateExpiry`, else `Ttl` seconds after its last
/// interaction (or its creation), else never.
fn expiry(date_expiry: Option<i64>, ttl: i64, since: i64) -> Option<i64> {
    date_expiry.or((ttl > 0).then(|| since.saturating_add(ttl)))
}

/// A participant as the form gives it (`Participants` JSON, or a Participant create).
struct NewParticipant {
    identifier: String,
    friendly_name: Option<String>,
    proxy_identifier: Option<String>,
    proxy_identifier_sid: Option<String>,
}

fn parse_participant(v: &Value, at: &str) -> Result<NewParticipant, ApiError> {
    let get = |k: &str| {
        v.get(k)
            .or_else(|| v.get(k.to_ascii_lowercase()))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let identifier = get("Identifier")
        .ok_or_else(|| ApiError::invalid(format!("{at}: Identifier is required")))?;
    Ok(NewParticipant {
        identifier,
        friendly_name: get("FriendlyName"),
        proxy_identifier: get("ProxyIdentifier"),
        proxy_identifier_sid: get("ProxyIdentifierSid"),
    })
}

fn participant_fields(f: &Fields) -> Result<NewParticipant, ApiError> {
    Ok(NewParticipant {
        identifier: f
            .get("Identifier")
            .ok_or_else(|| ApiError::invalid("Identifier is required"))?
            .to_owned(),
        friendly_name: f.text("FriendlyName", 255)?,
        proxy_identifier: f.get("ProxyIdentifier").map(str::to_owned),
        proxy_identifier_sid: f.get("ProxyIdentifierSid").map(str::to_owned),
    })
}

pub(crate) fn create_session(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (service, srow) = find_service(tx, service)?;
    let participants = f
        .all("Participants")
        .enumerate()
        .map(|(i, p)| {
            let v: Value = serde_json::from_str(p).map_err(|e| {
                ApiError::invalid(format!("Participants[{i}] {p:?} is not a JSON object: {e}"))
            })?;
            parse_participant(&v, &format!("Participants[{i}]"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if participants.len() > 2 {
        return Err(conflict(
            80609,
            format!(
                "a session has at most 2 participants, got {}",
                participants.len()
            ),
        ));
    }
    let mode = f
        .one_of("Mode", MODES)?
        .unwrap_or_else(|| "voice-and-message".into());
    let ttl = f.seconds("Ttl")?.unwrap_or(int(&srow, 3).unwrap_or(0));
    let date_expiry = f.date("DateExpiry")?;
    let status = f
        .one_of("Status", &["open", "in-progress"])?
        .unwrap_or_else(|| "open".into());
    let name = f.text("UniqueName", 191)?;
    tx.lock(&service)?;
    if let Some(name) = &name {
        if tx
            .row(
                "SELECT 1 FROM proxy_sessions WHERE service_sid = ?1 AND unique_name = ?2",
                &[service.as_str().into(), name.as_str().into()],
            )?
            .is_some()
        {
            return Err(conflict(
                80603,
                format!("UniqueName {name:?} is already a session of this service"),
            ));
        }
    }
    let sid = new_sid("KC");
    let now = time::now();
    tx.execute(
        "INSERT INTO proxy_sessions (sid, service_sid, unique_name, status, ttl, mode, date_expiry,
             date_started, expires_at, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8, ?8)",
        &[
            sid.as_str().into(),
            service.as_str().into(),
            name.into(),
            status.into(),
            ttl.into(),
            mode.into(),
            date_expiry.into(),
            now.into(),
            expiry(date_expiry, ttl, now).into(),
        ],
    )?;
    if participants.len() == 2 && participants[0].identifier == participants[1].identifier {
        return Err(conflict(
            80103,
            format!(
                "{} is already a participant of this session",
                participants[1].identifier
            ),
        ));
    }
    for p in &participants {
        add_participant(tx, &service, &srow, &sid, p)?;
    }
    Ok(session_json(ctx, &find_session(tx, &service, &sid)?))
}

/// Picks the proxy number for `identifier` and inserts the participant.
fn add_participant(
    tx: &mut dyn Tx,
    service: &str,
    srow: &Row,
    session: &str,
    p: &NewParticipant,
) -> Result<String, ApiError> {
    proxy_optout::validate_identifier("Identifier", &p.identifier)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if p.identifier != p.identifier.trim() || p.identifier.is_empty() {
        return Err(ApiError::invalid(format!(
            "Identifier {:?} is not a canonical address",
            p.identifier
        )));
    }
    let (number_sid, number) = pick_number(tx, service, srow, p)?;
    let proxy = proxy_for(&p.identifier, &number);
    let sid = new_sid("KP");
    let now = time::now();
    let active = session_active(tx, session)?;
    tx.execute(
        "INSERT INTO proxy_participants (sid, session_sid, service_sid, identifier, friendly_name,
             proxy_identifier, proxy_identifier_sid, active, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        &[
            sid.as_str().into(),
            session.into(),
            service.into(),
            p.identifier.as_str().into(),
            p.friendly_name.clone().into(),
            proxy.into(),
            number_sid.into(),
            active.into(),
            now.into(),
        ],
    )?;
    Ok(sid)
}

fn session_active(tx: &mut dyn Tx, session: &str) -> Result<bool, DbError> {
    Ok(tx
        .row(
            "SELECT status FROM proxy_sessions WHERE sid = ?1",
            &[session.into()],
        )?
        .and_then(|r| text(&r, 0))
        .is_some_and(|s| ACTIVE.contains(&s.as_str())))
}

/// The pool number for a new participant: the one asked for, or a free non-reserved one,
/// the one it had before first under `prefer-sticky`, never-used ones first under
/// `avoid-sticky`.
fn pick_number(
    tx: &mut dyn Tx,
    service: &str,
    srow: &Row,
    p: &NewParticipant,
) -> Result<(String, String), ApiError> {
    let held: Vec<String> = tx
        .query(
            "SELECT proxy_identifier_sid FROM proxy_participants WHERE identifier = ?1 AND active = 1",
            &[p.identifier.as_str().into()],
        )?
        .iter()
        .filter_map(|r| text(r, 0))
        .collect();
    let asked = p.proxy_identifier_sid.clone().or_else(|| {
        p.proxy_identifier
            .as_deref()
            .map(|x| strip_channel(x).to_owned())
    });
    if let Some(asked) = asked {
        let row = tx
            .row(
                "SELECT sid, phone_number FROM proxy_phone_numbers WHERE service_sid = ?1 AND (sid = ?2 OR phone_number = ?2)",
                &[service.into(), asked.as_str().into()],
            )?
            .ok_or_else(|| conflict(80101, format!("{asked} is not a number in this service's pool")))?;
        let sid = text(&row, 0).unwrap_or_default();
        if held.contains(&sid) {
            return Err(conflict(
                80206,
                format!(
                    "{} already has an active session through {asked}",
                    p.identifier
                ),
            ));
        }
        return Ok((sid, text(&row, 1).unwrap_or_default()));
    }
    let pool = tx.query(
        "SELECT sid, phone_number, is_reserved FROM proxy_phone_numbers WHERE service_sid = ?1 ORDER BY seq",
        &[service.into()],
    )?;
    if pool.is_empty() {
        return Err(conflict(80208, "the service's pool has no phone numbers"));
    }
    let free: Vec<(String, String)> = pool
        .iter()
        .filter(|r| int(r, 2) == Some(0))
        .map(|r| {
            (
                text(r, 0).unwrap_or_default(),
                text(r, 1).unwrap_or_default(),
            )
        })
        .collect();
    if free.is_empty() {
        return Err(conflict(
            80207,
            "every number in the service's pool is reserved",
        ));
    }
    let mut candidates: Vec<(String, String)> = free
        .into_iter()
        .filter(|(sid, _)| !held.contains(sid))
        .collect();
    if candidates.is_empty() {
        return Err(conflict(
            80206,
            format!(
                "every non-reserved number in the pool already has an active session with {}",
                p.identifier
            ),
        ));
    }
    // Most recent use first: the number the participant had last.
    let used: Vec<String> = tx
        .query(
            "SELECT proxy_identifier_sid FROM proxy_participants
             WHERE service_sid = ?1 AND identifier = ?2 ORDER BY seq DESC LIMIT 100",
            &[service.into(), p.identifier.as_str().into()],
        )?
        .iter()
        .filter_map(|r| text(r, 0))
        .collect();
    let rank = |sid: &String| used.iter().position(|u| u == sid);
    if text(srow, 8).as_deref() == Some("avoid-sticky") {
        // Never-used first (in pool order), then the least recently used.
        candidates.sort_by_key(|(sid, _)| rank(sid).map_or(i64::MIN, |r| -(r as i64)));
    } else {
        candidates.sort_by_key(|(sid, _)| rank(sid).map_or(usize::MAX, |r| r));
    }
    Ok(candidates.swap_remove(0))
}

pub(crate) fn fetch_session(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    Ok(session_json(ctx, &find_session(tx, &service, id)?))
}

pub(crate) fn list_sessions(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    req: PageReq,
) -> Result<Page, ApiError> {
    let (service, _) = find_service(tx, service)?;
    Ok(page(
        tx,
        &format!("{SESSION} WHERE service_sid = ?1"),
        &service,
        req,
        true,
        |r| session_json(ctx, r),
    )?)
}

fn close(tx: &mut dyn Tx, session: &str, reason: &str, now: i64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE proxy_sessions SET status = 'closed', closed_reason = ?2, date_ended = ?3,
             date_updated = ?3, expires_at = NULL WHERE sid = ?1",
        &[session.into(), reason.into(), now.into()],
    )?;
    tx.execute(
        "UPDATE proxy_participants SET active = 0 WHERE session_sid = ?1",
        &[session.into()],
    )?;
    Ok(())
}

pub(crate) fn update_session(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    id: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    tx.lock(&service)?;
    let row = find_session(tx, &service, id)?;
    let sid = text(&row, 1).unwrap_or_default();
    let status = text(&row, 4).unwrap_or_default();
    let wanted = f.one_of("Status", &["open", "in-progress", "closed"])?;
    let now = time::now();
    let mut ttl = int(&row, 6).unwrap_or(0);
    let mut date_expiry = int(&row, 8);
    let since = int(&row, 11).or(int(&row, 12)).unwrap_or(now);
    let changes = f.has("Ttl") || f.has("DateExpiry");
    if status == "closed" {
        match wanted.as_deref() {
            Some("open") => {
                return Err(conflict(
                    80608,
                    "a closed session reopens only with Status=in-progress",
                ))
            }
            Some("in-progress") => reopen(tx, &sid)?,
            Some(_) if !changes => return Ok(session_json(ctx, &row)),
            _ => {
                return Err(conflict(
                    80607,
                    format!("session {sid} is closed; reopen it with Status=in-progress first"),
                ))
            }
        }
    } else if wanted.as_deref() == Some("closed") {
        close(tx, &sid, "api", now)?;
        return Ok(session_json(ctx, &find_session(tx, &service, &sid)?));
    } else if let Some(w) = wanted.as_deref() {
        tx.execute(
            "UPDATE proxy_sessions SET status = ?2 WHERE sid = ?1",
            &[sid.as_str().into(), w.into()],
        )?;
    }
    if let Some(t) = f.seconds("Ttl")? {
        ttl = t;
    }
    if let Some(d) = f.date("DateExpiry")? {
        date_expiry = Some(d);
    }
    tx.execute(
        "UPDATE proxy_sessions SET ttl = ?2, date_expiry = ?3, expires_at = ?4, date_updated = ?5 WHERE sid = ?1",
        &[
            sid.as_str().into(),
            ttl.into(),
            date_expiry.into(),
            expiry(date_expiry, ttl, if status == "closed" { now } else { since }).into(),
            now.into(),
        ],
    )?;
    Ok(session_json(ctx, &find_session(tx, &service, &sid)?))
}

/// Reopens a closed session as `in-progress`: its participants route again, unless one of
/// them now holds the same proxy number in another active session.
fn reopen(tx: &mut dyn Tx, session: &str) -> Result<(), ApiError> {
    let clash = tx.row(
        "SELECT p.identifier, p.proxy_identifier FROM proxy_participants p
         JOIN proxy_participants q ON q.identifier = p.identifier
              AND q.proxy_identifier = p.proxy_identifier AND q.active = 1
         WHERE p.session_sid = ?1 AND p.date_deleted IS NULL LIMIT 1",
        &[session.into()],
    )?;
    if let Some(c) = clash {
        return Err(conflict(
            80206,
            format!(
                "cannot reopen: {} already has an active session through {}",
                text(&c, 0).unwrap_or_default(),
                text(&c, 1).unwrap_or_default()
            ),
        ));
    }
    let now = time::now();
    tx.execute(
        "UPDATE proxy_sessions SET status = 'in-progress', closed_reason = NULL, date_ended = NULL,
             date_updated = ?2 WHERE sid = ?1",
        &[session.into(), now.into()],
    )?;
    tx.execute(
        "UPDATE proxy_participants SET active = 1 WHERE session_sid = ?1 AND date_deleted IS NULL",
        &[session.into()],
    )?;
    Ok(())
}

pub(crate) fn delete_session(tx: &mut dyn Tx, service: &str, id: &str) -> Result<(), ApiError> {
    let (service, _) = find_service(tx, service)?;
    let sid = text(&find_session(tx, &service, id)?, 1).unwrap_or_default();
    for table in ["proxy_interactions", "proxy_participants"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE session_sid = ?1"),
            &[sid.as_str().into()],
        )?;
    }
    tx.execute("DELETE FROM proxy_sessions WHERE sid = ?1", &[sid.into()])?;
    Ok(())
}

/// Closes every active session whose time is up: `ttl` (by Ttl) or `expired` (by
/// DateExpiry). Safe on several instances at once: the update only takes rows still active.
pub(crate) fn sweep(tx: &mut dyn Tx, now: i64) -> Result<u64, DbError> {
    let due = tx.query(
        "SELECT sid, date_expiry FROM proxy_sessions
         WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND status IN ('open', 'in-progress')
         LIMIT 1000",
        &[now.into()],
    )?;
    for r in &due {
        let sid = text(r, 0).unwrap_or_default();
        let reason = if int(r, 1).is_some() {
            "expired"
        } else {
            "ttl"
        };
        close(tx, &sid, reason, now)?;
    }
    Ok(due.len() as u64)
}

// ---------------------------------------------------------------- participants

const PARTICIPANT: &str = "SELECT seq, sid, session_sid, service_sid, friendly_name, identifier,
    proxy_identifier, proxy_identifier_sid, date_deleted, date_created, date_updated
    FROM proxy_participants";

fn participant_json(ctx: &Ctx, r: &Row) -> Value {
    let (sid, session, service) = (
        text(r, 1).unwrap_or_default(),
        text(r, 2).unwrap_or_default(),
        text(r, 3).unwrap_or_default(),
    );
    let url = ctx.url(&format!(
        "Services/{service}/Sessions/{session}/Participants/{sid}"
    ));
    json!({
        "sid": sid,
        "session_sid": session,
        "service_sid": service,
        "account_sid": ctx.account,
        "friendly_name": opt(r, 4),
        "identifier": opt(r, 5),
        "proxy_identifier": opt(r, 6),
        "proxy_identifier_sid": opt(r, 7),
        "date_deleted": date(r, 8),
        "date_created": date(r, 9),
        "date_updated": date(r, 10),
        "url": url,
        "links": {"message_interactions": format!("{url}/MessageInteractions")},
    })
}

fn find_participant(tx: &mut dyn Tx, session: &str, id: &str) -> Result<Row, ApiError> {
    tx.row(
        &format!("{PARTICIPANT} WHERE session_sid = ?1 AND (sid = ?2 OR identifier = ?2)"),
        &[session.into(), id.into()],
    )?
    .ok_or_else(|| ApiError::not_found(&format!("/Sessions/{session}/Participants/{id}")))
}

pub(crate) fn create_participant(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    f: &Fields,
) -> Result<Value, ApiError> {
    let (service, srow) = find_service(tx, service)?;
    tx.lock(&service)?;
    let session = text(&find_session(tx, &service, session)?, 1).unwrap_or_default();
    let p = participant_fields(f)?;
    let existing = tx.query(
        "SELECT identifier, date_deleted FROM proxy_participants WHERE session_sid = ?1",
        &[session.as_str().into()],
    )?;
    for r in &existing {
        if text(r, 0).as_deref() == Some(p.identifier.as_str()) {
            return Err(if int(r, 1).is_some() {
                conflict(
                    80612,
                    format!(
                        "{} was removed from this session and cannot be added again",
                        p.identifier
                    ),
                )
            } else {
                conflict(
                    80103,
                    format!("{} is already a participant of this session", p.identifier),
                )
            });
        }
    }
    if existing.iter().filter(|r| int(r, 1).is_none()).count() >= 2 {
        return Err(conflict(80609, "this session already has 2 participants"));
    }
    let sid = add_participant(tx, &service, &srow, &session, &p)?;
    Ok(participant_json(
        ctx,
        &find_participant(tx, &session, &sid)?,
    ))
}

pub(crate) fn fetch_participant(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let (service, _) = find_service(tx, service)?;
    let session = text(&find_session(tx, &service, session)?, 1).unwrap_or_default();
    Ok(participant_json(ctx, &find_participant(tx, &session, id)?))
}

pub(crate) fn list_participants(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    req: PageReq,
) -> Result<Page, ApiError> {
    let (service, _) = find_service(tx, service)?;
    let session = text(&find_session(tx, &service, session)?, 1).unwrap_or_default();
    Ok(page(
        tx,
        &format!("{PARTICIPANT} WHERE session_sid = ?1 AND date_deleted IS NULL"),
        &session,
        req,
        false,
        |r| participant_json(ctx, r),
    )?)
}

/// Removes a participant: it stops routing at once and cannot be added again (80612).
pub(crate) fn delete_participant(
    tx: &mut dyn Tx,
    service: &str,
    session: &str,
    id: &str,
) -> Result<(), ApiError> {
    let (service, _) = find_service(tx, service)?;
    let session = text(&find_session(tx, &service, session)?, 1).unwrap_or_default();
    let sid = text(&find_participant(tx, &session, id)?, 1).unwrap_or_default();
    let now = time::now();
    tx.execute(
        "UPDATE proxy_participants SET active = 0, date_deleted = ?2, date_updated = ?2 WHERE sid = ?1",
        &[sid.into(), now.into()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- interactions

const INTERACTION: &str = "SELECT seq, sid, session_sid, service_sid, data, type,
    inbound_participant_sid, inbound_resource_sid, inbound_resource_status, inbound_resource_type,
    outbound_participant_sid, outbound_resource_sid, outbound_resource_status, outbound_resource_type,
    date_created, date_updated, via_participant_sid FROM proxy_interactions";

fn interaction_json(ctx: &Ctx, r: &Row, message: bool) -> Value {
    let (sid, session, service) = (
        text(r, 1).unwrap_or_default(),
        text(r, 2).unwrap_or_default(),
        text(r, 3).unwrap_or_default(),
    );
    let resource_url =
        |i: usize| text(r, i).map_or(Value::Null, |s| Value::String(ctx.message_url(&s)));
    let via = text(r, 16);
    let url = match (&via, message) {
        (Some(p), true) => ctx.url(&format!(
            "Services/{service}/Sessions/{session}/Participants/{p}/MessageInteractions/{sid}"
        )),
        _ => ctx.url(&format!(
            "Services/{service}/Sessions/{session}/Interactions/{sid}"
        )),
    };
    let mut v = json!({
        "sid": sid,
        "session_sid": session,
        "service_sid": service,
        "account_sid": ctx.account,
        "data": opt(r, 4),
        "type": opt(r, 5),
        "inbound_participant_sid": opt(r, 6),
        "inbound_resource_sid": opt(r, 7),
        "inbound_resource_status": opt(r, 8),
        "inbound_resource_type": opt(r, 9),
        "inbound_resource_url": resource_url(7),
        "outbound_participant_sid": opt(r, 10),
        "outbound_resource_sid": opt(r, 11),
        "outbound_resource_status": opt(r, 12),
        "outbound_resource_type": opt(r, 13),
        "outbound_resource_url": resource_url(11),
        "date_created": date(r, 14),
        "date_updated": date(r, 15),
        "url": url,
    });
    if message {
        v["participant_sid"] = via.map_or(Value::Null, Value::String);
    }
    v
}

/// One interaction by its SID, rendered, wherever it is.
pub(crate) fn interaction(tx: &mut dyn Tx, ctx: &Ctx, sid: &str) -> Result<Option<Value>, DbError> {
    Ok(tx
        .row(&format!("{INTERACTION} WHERE sid = ?1"), &[sid.into()])?
        .map(|r| interaction_json(ctx, &r, false)))
}

fn session_of(tx: &mut dyn Tx, service: &str, session: &str) -> Result<String, ApiError> {
    let (service, _) = find_service(tx, service)?;
    Ok(text(&find_session(tx, &service, session)?, 1).unwrap_or_default())
}

pub(crate) fn list_interactions(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    req: PageReq,
) -> Result<Page, ApiError> {
    let session = session_of(tx, service, session)?;
    Ok(page(
        tx,
        &format!("{INTERACTION} WHERE session_sid = ?1"),
        &session,
        req,
        true,
        |r| interaction_json(ctx, r, false),
    )?)
}

pub(crate) fn fetch_interaction(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let session = session_of(tx, service, session)?;
    let row = tx
        .row(
            &format!("{INTERACTION} WHERE session_sid = ?1 AND sid = ?2"),
            &[session.as_str().into(), id.into()],
        )?
        .ok_or_else(|| ApiError::not_found(&format!("/Sessions/{session}/Interactions/{id}")))?;
    Ok(interaction_json(ctx, &row, false))
}

pub(crate) fn delete_interaction(
    tx: &mut dyn Tx,
    service: &str,
    session: &str,
    id: &str,
) -> Result<(), ApiError> {
    let session = session_of(tx, service, session)?;
    let n = tx.execute(
        "DELETE FROM proxy_interactions WHERE session_sid = ?1 AND sid = ?2",
        &[session.as_str().into(), id.into()],
    )?;
    if n == 0 {
        return Err(ApiError::not_found(&format!(
            "/Sessions/{session}/Interactions/{id}"
        )));
    }
    Ok(())
}

/// What a MessageInteraction will send: checked and written (`queued`, no message yet)
/// before the send, so a crash leaves a record rather than an untracked text.
pub(crate) struct Planned {
    pub(crate) sid: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) body: String,
}

pub(crate) fn plan_message(
    tx: &mut dyn Tx,
    service: &str,
    session: &str,
    participant: &str,
    f: &Fields,
) -> Result<Planned, ApiError> {
    let (service, _) = find_service(tx, service)?;
    let srow = find_session(tx, &service, session)?;
    let session = text(&srow, 1).unwrap_or_default();
    if !ACTIVE.contains(&text(&srow, 4).unwrap_or_default().as_str()) {
        return Err(conflict(80607, format!("session {session} is closed")));
    }
    let prow = find_participant(tx, &session, participant)?;
    if int(&prow, 8).is_some() {
        return Err(conflict(
            80612,
            format!(
                "participant {} was removed",
                text(&prow, 1).unwrap_or_default()
            ),
        ));
    }
    let body = f.text("Body", 1600)?.unwrap_or_default();
    if body.is_empty() && !f.has("MediaUrl") {
        return Err(ApiError::invalid("Body or MediaUrl is required"));
    }
    let (psid, identifier, proxy) = (
        text(&prow, 1).unwrap_or_default(),
        text(&prow, 5).unwrap_or_default(),
        text(&prow, 6).unwrap_or_default(),
    );
    let sid = new_sid("KI");
    let now = time::now();
    tx.execute(
        "INSERT INTO proxy_interactions (sid, session_sid, service_sid, data, type,
             outbound_participant_sid, outbound_resource_status, outbound_resource_type,
             via_participant_sid, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, 'message', ?5, 'queued', 'Message', ?5, ?6, ?6)",
        &[
            sid.as_str().into(),
            session.as_str().into(),
            service.into(),
            json!({"body": body}).to_string().into(),
            psid.into(),
            now.into(),
        ],
    )?;
    touch(tx, &session, now)?;
    Ok(Planned {
        sid,
        from: proxy,
        to: identifier,
        body,
    })
}

/// The sessions had an interaction: `open` becomes `in-progress`, and a Ttl counts again.
/// One statement for all of them.
fn touch_all(tx: &mut dyn Tx, sessions: Vec<String>, now: i64) -> Result<(), DbError> {
    if !tx.postgres() {
        // No round trips to save: the statement prepared once, run per session.
        for session in &sessions {
            touch(tx, session, now)?;
        }
        return Ok(());
    }
    let ids: Vec<Value> = sessions
        .into_iter()
        .map(|sid| json!({ "sid": sid }))
        .collect();
    let source = tx.json_rows(&["sid"]);
    tx.execute(
        &format!(
            "WITH {source}
             UPDATE proxy_sessions SET
                 status = CASE WHEN status = 'open' THEN 'in-progress' ELSE status END,
                 date_last_interaction = ?2, date_updated = ?2,
                 expires_at = CASE WHEN date_expiry IS NOT NULL THEN date_expiry
                                   WHEN ttl > 0 THEN ?2 + ttl ELSE NULL END
             WHERE sid IN (SELECT sid FROM x) AND status IN ('open', 'in-progress')"
        ),
        &[Value::Array(ids).to_string().into(), now.into()],
    )?;
    Ok(())
}

/// The session had an interaction: `open` becomes `in-progress`, and a Ttl counts again.
fn touch(tx: &mut dyn Tx, session: &str, now: i64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE proxy_sessions SET
             status = CASE WHEN status = 'open' THEN 'in-progress' ELSE status END,
             date_last_interaction = ?2, date_updated = ?2,
             expires_at = CASE WHEN date_expiry IS NOT NULL THEN date_expiry
                               WHEN ttl > 0 THEN ?2 + ttl ELSE NULL END
         WHERE sid = ?1 AND status IN ('open', 'in-progress')",
        &[session.into(), now.into()],
    )?;
    Ok(())
}

/// Stores what became of a MessageInteraction's send.
pub(crate) fn finish_message(
    tx: &mut dyn Tx,
    sid: &str,
    message_sid: Option<&str>,
    status: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE proxy_interactions SET outbound_resource_sid = ?2, outbound_resource_status = ?3,
             date_updated = ?4 WHERE sid = ?1",
        &[
            sid.into(),
            message_sid.into(),
            status.into(),
            time::now().into(),
        ],
    )?;
    Ok(())
}

pub(crate) fn fetch_message(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    participant: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let session = session_of(tx, service, session)?;
    let psid = text(&find_participant(tx, &session, participant)?, 1).unwrap_or_default();
    let row = tx
        .row(
            &format!(
                "{INTERACTION} WHERE session_sid = ?1 AND via_participant_sid = ?2 AND sid = ?3"
            ),
            &[session.as_str().into(), psid.into(), id.into()],
        )?
        .ok_or_else(|| ApiError::not_found(&format!("/MessageInteractions/{id}")))?;
    Ok(interaction_json(ctx, &row, true))
}

pub(crate) fn list_messages(
    tx: &mut dyn Tx,
    ctx: &Ctx,
    service: &str,
    session: &str,
    participant: &str,
    req: PageReq,
) -> Result<Page, ApiError> {
    let session = session_of(tx, service, session)?;
    let psid = text(&find_participant(tx, &session, participant)?, 1).unwrap_or_default();
    Ok(page(
        tx,
        &format!("{INTERACTION} WHERE via_participant_sid = ?1"),
        &psid,
        req,
        true,
        |r| interaction_json(ctx, r, true),
    )?)
}

/// One relayed message as an Interaction: its inbound leg (`delivered`), and its outbound
/// leg when there was one to send (sent, refused with 21610, or rejected).
pub(crate) struct Relayed {
    /// The interaction's SID, named before it is stored (see `hooks::interaction_sid`).
    pub(crate) sid: String,
    pub(crate) session: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) body: String,
    pub(crate) message_sid: Option<String>,
    /// (the sent message's id, its status), when there was an outbound leg.
    pub(crate) outbound: Option<(Option<String>, &'static str)>,
}

/// Stores a group of relayed messages' interactions and touches each of their sessions; for
/// each message, `false` when it was stored before (a replayed message names the same SID).
///
/// On PostgreSQL in two statements whatever the group's size, the rows as one JSON
/// parameter: a statement per message made the log's writer the server's bottleneck, one
/// round trip each. On SQLite there is no round trip, and the same statement prepared once
/// and run per message with its own parameters costs less than encoding the group as JSON
/// and taking it apart again (which was a fifth of the database thread's time).
pub(crate) fn record_relayed_group(
    tx: &mut dyn Tx,
    group: &[&Relayed],
) -> Result<Vec<bool>, DbError> {
    if group.is_empty() {
        return Ok(Vec::new());
    }
    const COLUMNS: [&str; 8] = [
        "sid",
        "session",
        "sender",
        "proxy",
        "data",
        "message_sid",
        "out_sid",
        "out_status",
    ];
    let now = time::now();
    let values = |r: &Relayed| -> [Val; 8] {
        let (out_sid, out_status) = match &r.outbound {
            Some((sid, status)) => (sid.clone(), Some(*status)),
            None => (None, None),
        };
        let opt = |v: Option<String>| v.map_or(Val::Null, Val::Text);
        [
            r.sid.as_str().into(),
            r.session.as_str().into(),
            r.from.as_str().into(),
            r.to.as_str().into(),
            json!({"body": r.body}).to_string().into(),
            opt(r.message_sid.clone()),
            opt(out_sid),
            opt(out_status.map(str::to_owned)),
        ]
    };
    // The participant is the session's row for the sender on that number; the outbound
    // participant the session's other, live one.
    let insert = |source: &str| {
        format!(
            "WITH {source}, d AS (SELECT x.*, (SELECT q.sid FROM proxy_participants q
                                  WHERE q.session_sid = x.session AND q.identifier = x.sender
                                    AND q.proxy_identifier = x.proxy LIMIT 1) AS participant
                              FROM x)
             INSERT INTO proxy_interactions (sid, session_sid, service_sid, data, type,
                 inbound_participant_sid, inbound_resource_sid, inbound_resource_status, inbound_resource_type,
                 outbound_participant_sid, outbound_resource_sid, outbound_resource_status, outbound_resource_type,
                 date_created, date_updated)
             SELECT d.sid, p.session_sid, p.service_sid, d.data, 'message',
                    p.sid, d.message_sid, 'delivered', 'Message',
                    CASE WHEN d.out_status IS NULL THEN NULL ELSE
                        (SELECT o.sid FROM proxy_participants o
                          WHERE o.session_sid = p.session_sid AND o.sid <> p.sid
                            AND o.date_deleted IS NULL LIMIT 1) END,
                    d.out_sid, d.out_status,
                    CASE WHEN d.out_status IS NULL THEN NULL ELSE 'Message' END,
                    CAST(?2 AS BIGINT), CAST(?2 AS BIGINT)
             FROM d JOIN proxy_participants p ON p.sid = d.participant
             WHERE true
             ON CONFLICT (sid) DO NOTHING
             RETURNING sid, session_sid"
        )
    };
    let inserted = if tx.postgres() {
        let rows: Vec<Value> = group
            .iter()
            .map(|r| {
                let row: serde_json::Map<String, Value> = COLUMNS
                    .iter()
                    .zip(values(r))
                    .map(|(c, v)| (c.to_string(), v.text().map_or(Value::Null, Value::from)))
                    .collect();
                Value::Object(row)
            })
            .collect();
        let sql = insert(&tx.json_rows(&COLUMNS));
        tx.query(&sql, &[Value::Array(rows).to_string().into(), now.into()])?
    } else {
        let picked: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("?{} AS {c}", i + 3))
            .collect();
        let sql = insert(&format!("x AS (SELECT {})", picked.join(", ")));
        let mut inserted = Vec::new();
        for r in group {
            let mut params = vec![Val::Null, now.into()];
            params.extend(values(r));
            inserted.extend(tx.query(&sql, &params)?);
        }
        inserted
    };
    let mut new: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut sessions = std::collections::BTreeSet::new();
    for row in inserted {
        if let Some(sid) = text(&row, 0) {
            new.insert(sid);
        }
        if let Some(session) = text(&row, 1) {
            sessions.insert(session);
        }
    }
    if !sessions.is_empty() {
        touch_all(tx, sessions.into_iter().collect(), now)?;
    }
    // A SID twice in one group (a redelivery) is new once, for its first message.
    Ok(group.iter().map(|r| new.remove(&r.sid)).collect())
}

/// How far along a message status is: a status callback never moves a leg backwards
/// (callbacks can arrive out of order).
fn rank(status: &str) -> u8 {
    match status {
        "accepted" | "scheduled" => 1,
        "queued" => 2,
        "sending" => 3,
        "sent" => 4,
        "delivered" | "undelivered" | "failed" | "read" | "canceled" => 5,
        _ => 0,
    }
}

/// Moves the outbound legs sent as `message_sid` forward to `status`; the interactions that
/// moved.
pub(crate) fn record_status(
    tx: &mut dyn Tx,
    interaction: Option<&str>,
    message_sid: &str,
    status: &str,
) -> Result<Vec<String>, DbError> {
    let mut moved = Vec::new();
    // By the Interaction the callback's URL names (its SID's unique index), checked against
    // the leg's message SID, so a callback names only the leg it reports on. Without a name
    // (a send made before the URL carried one), among the latest Interactions by `seq`, the
    // primary key: an index on the outbound SID would cost every relayed message a write to
    // one more random page, only for callbacks of sends made before the upgrade.
    let rows = match interaction {
        Some(sid) => tx.query(
            "SELECT sid, outbound_resource_status FROM proxy_interactions
             WHERE sid = ?1 AND outbound_resource_sid = ?2",
            &[sid.into(), message_sid.into()],
        )?,
        None => tx.query(
            "SELECT sid, outbound_resource_status FROM proxy_interactions
             WHERE seq > (SELECT coalesce(max(seq), 0) FROM proxy_interactions) - ?2
               AND outbound_resource_sid = ?1",
            &[message_sid.into(), UNNAMED_STATUS_WINDOW.into()],
        )?,
    };
    for r in rows {
        let current = text(&r, 1).unwrap_or_default();
        if rank(status) > rank(&current) {
            let sid = text(&r, 0).unwrap_or_default();
            tx.execute(
                "UPDATE proxy_interactions SET outbound_resource_status = ?2, date_updated = ?3 WHERE sid = ?1",
                &[sid.as_str().into(), status.into(), time::now().into()],
            )?;
            moved.push(sid);
        }
    }
    Ok(moved)
}

/// How many of the latest Interactions a status callback that names none is matched among.
pub(crate) const UNNAMED_STATUS_WINDOW: i64 = 10_000;

/// Makes sure a service named `name` exists with `numbers` in its pool (the server's
/// `--proxy-numbers`), for running without calling the API first.
pub(crate) fn seed(tx: &mut dyn Tx, name: &str, numbers: &[String]) -> Result<(), ApiError> {
    tx.lock("proxy_services")?;
    let service = match tx.row(
        "SELECT sid FROM proxy_services WHERE unique_name = ?1",
        &[name.into()],
    )? {
        Some(r) => text(&r, 0).unwrap_or_default(),
        None => {
            let sid = new_sid("KS");
            tx.execute(
                "INSERT INTO proxy_services (sid, unique_name, date_created, date_updated) VALUES (?1, ?2, ?3, ?3)",
                &[sid.as_str().into(), name.into(), time::now().into()],
            )?;
            sid
        }
    };
    for n in numbers {
        let owner = tx.row(
            "SELECT service_sid FROM proxy_phone_numbers WHERE phone_number = ?1",
            &[n.as_str().into()],
        )?;
        match owner.and_then(|r| text(&r, 0)) {
            Some(o) if o == service => {}
            Some(o) => {
                return Err(conflict(
                    80101,
                    format!("--proxy-numbers: {n} already belongs to service {o}"),
                ))
            }
            None => {
                tx.execute(
                    "INSERT INTO proxy_phone_numbers (sid, service_sid, phone_number, is_reserved, date_created, date_updated)
                     VALUES (?1, ?2, ?3, 0, ?4, ?4)",
                    &[new_sid("PN").into(), service.as_str().into(), n.as_str().into(), time::now().into()],
                )?;
            }
        }
    }
    Ok(())
}
