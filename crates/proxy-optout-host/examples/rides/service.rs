//! An existing ride-hailing service that relays texts between riders and drivers through a
//! masked number. Its sessions are rows of its own `rides` table; adding the relay is the
//! part between the two `glue` markers, and nothing else changed.
//!
//! Everything outside the markers is the service's own business (its table, its query, its
//! `POST /rides`) or start-up it had anyway.

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use proxy_optout_host::reexports::proxy_optout_postgres::deadpool_postgres::{
    Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
use proxy_optout_host::reexports::proxy_optout_postgres::tokio_postgres::{self, NoTls};
use proxy_optout_host::{
    BoxFuture, Ledger, PgLedger, Pipeline, RouteResult, Routing, SessionRoute, SqliteLedger,
    TwilioSender, STATUS_CALLBACK_PATH,
};

/// A failure of the service's own storage.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// One ride: a rider and a driver who text each other through `proxy_number`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Ride {
    /// The ride's id.
    pub id: String,
    /// The rider's phone number.
    pub rider: String,
    /// The driver's phone number.
    pub driver: String,
    /// The masked number both text.
    pub proxy_number: String,
}

/// The service's rides table: its own SQLite file, or the PostgreSQL database it shares with
/// everything else it stores.
#[derive(Clone)]
pub enum Rides {
    /// `rides.db`, through rusqlite.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    /// The service's PostgreSQL pool.
    Postgres(Pool),
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rides (
    id TEXT PRIMARY KEY, rider TEXT NOT NULL, driver TEXT NOT NULL,
    proxy_number TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1)";
const FIND: &str = "SELECT id, rider, driver, proxy_number FROM rides
    WHERE active = 1 AND (rider = $1 OR driver = $1) AND proxy_number = $2 LIMIT 1";
const INSERT: &str = "INSERT INTO rides (id, rider, driver, proxy_number) VALUES ($1, $2, $3, $4)";

impl Rides {
    /// The rides table in its own SQLite file.
    pub fn sqlite(rides_db: &Path) -> Result<Rides, BoxError> {
        let c = rusqlite::Connection::open(rides_db)?;
        c.execute_batch(SCHEMA)?;
        Ok(Rides::Sqlite(Arc::new(Mutex::new(c))))
    }

    /// The rides table in the PostgreSQL database at `url`, through the service's own pool.
    pub async fn postgres(url: &str) -> Result<Rides, BoxError> {
        let config: tokio_postgres::Config = url.parse()?;
        let fast = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(config, NoTls, fast);
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .build()?;
        pool.get().await?.batch_execute(SCHEMA).await?;
        Ok(Rides::Postgres(pool))
    }

    /// The rides table where `database` says: a PostgreSQL URL, or a SQLite file in `dir`.
    pub async fn open(database: &str, dir: &Path) -> Result<Rides, BoxError> {
        if database.starts_with("postgres") {
            Rides::postgres(database).await
        } else {
            Rides::sqlite(&dir.join(database))
        }
    }

    /// Books a ride.
    pub async fn create(&self, r: &Ride) -> Result<(), BoxError> {
        match self {
            Rides::Sqlite(c) => {
                let c = c.lock().map_err(|e| e.to_string())?;
                c.execute(INSERT, [&r.id, &r.rider, &r.driver, &r.proxy_number])?;
            }
            Rides::Postgres(pool) => {
                let c = pool.get().await?;
                c.execute(INSERT, &[&r.id, &r.rider, &r.driver, &r.proxy_number])
                    .await?;
            }
        }
        Ok(())
    }

    /// The active ride in which `from` texts `to`.
    pub async fn find(&self, from: &str, to: &str) -> Result<Option<Ride>, BoxError> {
        let row = |id, rider, driver, proxy_number| Ride {
            id,
            rider,
            driver,
            proxy_number,
        };
        match self {
            Rides::Sqlite(c) => {
                let (c, from, to) = (c.clone(), from.to_owned(), to.to_owned());
                tokio::task::spawn_blocking(move || {
                    let c = c.lock().map_err(|e| e.to_string())?;
                    let mut q = c.prepare_cached(FIND)?;
                    let mut rows = q.query([&from, &to])?;
                    Ok(match rows.next()? {
                        Some(r) => Some(row(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                        None => None,
                    })
                })
                .await?
            }
            Rides::Postgres(pool) => {
                let c = pool.get().await?;
                let found = c.query_opt(FIND, &[&from, &to]).await?;
                Ok(found.map(|r| row(r.get(0), r.get(1), r.get(2), r.get(3))))
            }
        }
    }
}

/// The service's configuration (it had one before the relay: its database, its Twilio
/// account, its public URL).
#[derive(Clone, Debug)]
pub struct Config {
    /// The rides table: a SQLite file in `dir`, or a `postgres://` URL.
    pub database: String,
    /// Where SQLite files go.
    pub dir: std::path::PathBuf,
    /// The URL Twilio posts to.
    pub public_url: String,
    /// `https://api.twilio.com`, or a test server.
    pub twilio_api_url: String,
    /// The Twilio account SID.
    pub account_sid: String,
    /// The account's auth token (Twilio signs webhooks with it too).
    pub auth_token: String,
}

// --- glue: begin
impl Routing for Rides {
    fn route<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, RouteResult> {
        Box::pin(async move {
            let Some(r) = self.find(from, to).await? else {
                return Ok(None);
            };
            let other = if r.rider == from { r.driver } else { r.rider };
            Ok(Some(SessionRoute::new(r.id, from, to, Some((&other, to)))?))
        })
    }
}

/// The relay: the opt-out ledger beside the rides, the service's routing, its Twilio account.
pub async fn relay(rides: Rides, c: &Config) -> Result<Pipeline, BoxError> {
    let ledger: Ledger = if c.database.starts_with("postgres") {
        PgLedger::connect(&c.database, 8).await?.into()
    } else {
        SqliteLedger::open(c.dir.join("optout.db")).await?.into()
    };
    let sender = TwilioSender::new(&c.twilio_api_url, &c.account_sid, &c.auth_token)?
        .status_callback(format!("{}{STATUS_CALLBACK_PATH}", c.public_url));
    Ok(Pipeline::builder(ledger, rides, sender)
        .auth_token(&c.auth_token)
        .public_url(&c.public_url)
        .journal(c.dir.join("journal.db"))
        .start()
        .await?)
}
// --- glue: end

/// The service's HTTP API: its own `POST /rides`, and (one glue line) the relay's webhooks.
pub fn app(rides: Rides, pipeline: &Pipeline) -> Router {
    Router::new()
        .route("/rides", post(book))
        .with_state(rides)
        .merge(pipeline.router()) // glue
}

async fn book(State(rides): State<Rides>, Json(ride): Json<Ride>) -> (StatusCode, String) {
    match rides.create(&ride).await {
        Ok(()) => (StatusCode::CREATED, ride.id),
        Err(e) => (StatusCode::CONFLICT, e.to_string()),
    }
}
