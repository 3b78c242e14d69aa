//! Configuration: flags and environment variables, checked at start so that a bad setting
//! fails with one line naming it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use proxy_optout::{validate_identifier, CarrierMode};

use crate::backend::Database;

/// A setting that cannot work.
///
/// ```
/// let e = proxy_relay::ConfigError::new("public-url", "\"ftp://x\" is not an http(s) URL");
/// assert_eq!(e.to_string(), "--public-url: \"ftp://x\" is not an http(s) URL");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--{setting}: {reason}")]
pub struct ConfigError {
    /// The flag's name (its environment variable is listed in `--help`).
    pub setting: &'static str,
    /// What is wrong, naming the value (never a secret's value).
    pub reason: String,
}

impl ConfigError {
    /// An error for `setting`.
    ///
    /// ```
    /// assert_eq!(proxy_relay::ConfigError::new("listen", "x").setting, "listen");
    /// ```
    #[must_use]
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// The command line. Settings may come before or after the subcommand.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "demo"]);
/// assert!(matches!(cli.command, Some(proxy_relay::Command::Demo)));
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "serve", "--listen", "localhost:9000"]);
/// assert_eq!(cli.serve.listen, "localhost:9000");
/// ```
#[derive(Debug, Parser)]
#[command(
    name = "proxy-relay",
    version,
    about = "A masked-number SMS relay: Twilio webhooks in, sends out, Twilio Proxy's opt-out rules.",
    long_about = None
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The server's settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
///
/// ```
/// use clap::Parser;
/// assert!(proxy_relay::Cli::parse_from(["proxy-relay"]).command.is_none()); // serve
/// ```
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Start on a temporary SQLite file, play a rider/driver conversation through signed
    /// webhooks over HTTP, print one line per step, and exit.
    Demo,
    /// The opt-out list and its history in the configured --database: export them, or import
    /// a list from another provider. On SQLite, run it while the server is stopped (the
    /// server holds its file exclusively).
    Optouts {
        /// Export or import.
        #[command(subcommand)]
        action: OptoutsCommand,
    },
}

/// `proxy-relay optouts ...`.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "optouts", "export", "--format", "jsonl"]);
/// assert!(matches!(cli.command, Some(proxy_relay::Command::Optouts { .. })));
/// ```
#[derive(Debug, Subcommand)]
pub enum OptoutsCommand {
    /// Write the opted-out list (default) or the whole history, as CSV or JSON Lines, to
    /// standard output or --output.
    Export {
        /// The opted-out list (each pair opted out now, with the entry that did it) or every
        /// recorded change.
        #[arg(long, value_enum, default_value_t)]
        what: crate::ExportWhat,
        /// CSV (times as ISO 8601 UTC) or JSON Lines (times in Unix milliseconds).
        #[arg(long, value_enum, default_value_t)]
        format: crate::ExportFormat,
        /// Only this proxy number (or service id).
        #[arg(long)]
        scope: Option<String>,
        /// Only this participant.
        #[arg(long)]
        participant: Option<String>,
        /// Only entries recorded at or after this time (2025-03-14, 2025-03-14T09:00:00Z, or
        /// Unix milliseconds).
        #[arg(long)]
        since: Option<String>,
        /// Only entries recorded before this time.
        #[arg(long)]
        until: Option<String>,
        /// Only entries that set this state (`opted_in` or `opted_out`; history only).
        #[arg(long)]
        state: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Import a CSV list of opted-out participants (columns participant or phone_number,
    /// proxy_number or scope, and optionally opted_out_at): all rows are checked first, and
    /// with a bad one nothing is imported; re-running an import records nothing twice.
    Import {
        /// The CSV file (`-` for standard input).
        file: std::path::PathBuf,
        /// The proxy number (or service id) of every row, for a list without a proxy_number
        /// column.
        #[arg(long)]
        scope: Option<String>,
    },
}

/// The carrier-layer mode: who sends the STOP/START/HELP replies.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "--mode", "mirror"]);
/// assert_eq!(cli.serve.mode, proxy_relay::ModeArg::Mirror);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// This server sends the STOP/START/HELP replies and refuses sends to opted-out pairs.
    Emulate,
    /// The platform does (Twilio with default STOP filtering): the ledger only follows.
    Mirror,
}

/// Which [`Sender`](crate::Sender) forwards messages.
///
/// ```
/// use clap::Parser;
/// assert_eq!(proxy_relay::Cli::parse_from(["proxy-relay"]).serve.sender, proxy_relay::SenderArg::Log);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SenderArg {
    /// Log what would be sent (no account needed).
    Log,
    /// Twilio's REST API.
    Twilio,
}

/// The server's settings; every flag has an environment variable.
///
/// ```
/// use clap::Parser;
/// let args = proxy_relay::Cli::parse_from(["proxy-relay", "--proxy-numbers", "+1P,+1Q"]).serve;
/// assert_eq!(args.proxy_numbers, ["+1P", "+1Q"]);
/// ```
#[derive(Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on: host (or IP) and port.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// A SQLite file (created on first run) or a postgres:// URL (for several instances).
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_DATABASE",
        default_value = "proxy-relay.db"
    )]
    pub database: String,
    /// The public base URL Twilio posts to (signatures are checked against it, not against
    /// what a proxy in front forwards). Default: `http://` and the --listen address.
    #[arg(long, global = true, env = "PROXY_RELAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Twilio auth token(s) that sign webhooks; several, comma-separated, while rotating.
    /// Default: one generated for this run and printed once.
    #[arg(
        long,
        global = true,
        env = "TWILIO_AUTH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_token: Vec<String>,
    /// How often expired sessions (Ttl, DateExpiry) are closed, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SESSION_SWEEP_MS",
        default_value_t = 1000
    )]
    pub session_sweep_ms: u64,
    /// Days of opt-out history to keep (default: all). The entry behind each current
    /// opt-out is always kept. TCPA claims can be brought for four years: keep at least 1461.
    #[arg(long, global = true, env = "PROXY_RELAY_HISTORY_RETENTION_DAYS")]
    pub history_retention_days: Option<u32>,
    /// Days to keep the message texts in the opt-out history (default: as long as the
    /// entries); the entries stay, without their text. 0 clears them at each hourly pass.
    #[arg(long, global = true, env = "PROXY_RELAY_TEXT_RETENTION_DAYS")]
    pub text_retention_days: Option<u32>,
    /// Twilio's `ProxyRespectSmsStopFilterFlag`, account-wide: when set, keywords follow each
    /// number's STOP filtering (PhoneNumbers' `StopFiltering`), and with filtering off they
    /// are relayed (to the InterceptCallbackUrl first) like any message. Off: Proxy drops
    /// them whatever the filtering.
    #[arg(long, global = true, env = "PROXY_RELAY_RESPECT_STOP_FILTER_FLAG")]
    pub respect_stop_filter_flag: bool,
    /// How long the InterceptCallbackUrl may take before the message is let through, in
    /// milliseconds (inside Twilio's 15 s webhook budget, with room for the send).
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_INTERCEPT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub intercept_timeout_ms: u64,
    /// How long one CallbackUrl or OutOfSessionCallbackUrl attempt may take, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_CALLBACK_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub callback_timeout_ms: u64,
    /// Attempts per CallbackUrl delivery (informational, so retrying is safe); then 80908.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_CALLBACK_ATTEMPTS",
        default_value_t = 3
    )]
    pub callback_attempts: u32,
    /// A URL that receives each debugger alert as it is raised (Twilio's debugger webhook),
    /// signed like Twilio's webhooks.
    #[arg(long, global = true, env = "PROXY_RELAY_DEBUGGER_WEBHOOK_URL")]
    pub debugger_webhook_url: Option<String>,
    /// Days of debugger alerts to keep (Twilio keeps 30).
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_ALERT_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub alert_retention_days: u32,
    /// How often each instance re-reads the services' callback URLs and the numbers' STOP
    /// filtering, in milliseconds (a change made through this instance applies at once).
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SETTINGS_REFRESH_MS",
        default_value_t = 2000
    )]
    pub settings_refresh_ms: u64,
    /// The proxy number pool, comma-separated.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_PROXY_NUMBERS",
        value_delimiter = ',',
        default_value = "+15550000100,+15550000101,+15550000102"
    )]
    pub proxy_numbers: Vec<String>,
    /// The carrier-layer mode.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_MODE",
        value_enum,
        default_value = "emulate"
    )]
    pub mode: ModeArg,
    /// How forwarded messages are sent.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SENDER",
        value_enum,
        default_value = "log"
    )]
    pub sender: SenderArg,
    /// Twilio account SID (with --sender twilio).
    #[arg(long, global = true, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// An API key SID (SK…) to authenticate REST calls instead of the account's auth token.
    #[arg(
        long,
        global = true,
        env = "TWILIO_API_KEY",
        requires = "twilio_api_secret"
    )]
    pub twilio_api_key: Option<String>,
    /// The API key's secret.
    #[arg(
        long,
        global = true,
        env = "TWILIO_API_SECRET",
        hide_env_values = true,
        requires = "twilio_api_key"
    )]
    pub twilio_api_secret: Option<String>,
    /// Twilio REST API base URL.
    #[arg(
        long,
        global = true,
        env = "TWILIO_API_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_url: String,
    /// Per-attempt send timeout, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SEND_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub send_timeout_ms: u64,
    /// Attempts per send. A send that never left is tried again at once; one whose fate is
    /// unknown (a timeout, a reset, a 5xx) only after the provider says it has no such message.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SEND_ATTEMPTS",
        default_value_t = 3
    )]
    pub send_attempts: u32,
    /// The local journal: authenticated webhooks kept (synced) while the database or the
    /// provider cannot take them, handled in arrival order once they can. Default: beside a
    /// SQLite database (relay.db: relay.journal.db), or ./proxy-relay.journal.db.
    #[arg(long, global = true, env = "PROXY_RELAY_JOURNAL")]
    pub journal: Option<std::path::PathBuf>,
    /// How long a connection may take to send a complete request head, in milliseconds,
    /// counted from when the server starts waiting for one: on a new connection, and on a
    /// kept-alive connection between requests (so it is also the idle timeout). Then it is
    /// closed.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_timeout_ms: u64,
    /// The most connections open at once; more are closed as they arrive.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_connections: usize,
    /// The most requests handled at once; more are answered 503 with Retry-After (the
    /// webhook URL's connection overrides make Twilio retry them).
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_MAX_IN_FLIGHT",
        default_value_t = 1_024
    )]
    pub max_in_flight: usize,
    /// How long one message's decision may wait for the database, in milliseconds, before
    /// the message is journaled instead.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_DATABASE_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub database_timeout_ms: u64,
    /// PostgreSQL connections per instance.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_PG_POOL_SIZE",
        default_value_t = 16
    )]
    pub pg_pool_size: usize,
    /// How long in-flight requests may finish after SIGTERM, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "PROXY_RELAY_SHUTDOWN_GRACE_MS",
        default_value_t = 10_000
    )]
    pub shutdown_grace_ms: u64,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("listen", &self.listen)
            .field("database", &Database::parse(&self.database).redacted())
            .field("public_url", &self.public_url)
            .field("auth_token", &format!("{} token(s)", self.auth_token.len()))
            .field("proxy_numbers", &self.proxy_numbers)
            .field("mode", &self.mode)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// How forwards are sent, once checked.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay"]);
/// assert!(matches!(proxy_relay::Config::from_args(&cli.serve)?.sender, proxy_relay::SenderConfig::Log));
/// # Ok::<(), proxy_relay::ConfigError>(())
/// ```
#[non_exhaustive]
#[derive(Clone)]
pub enum SenderConfig {
    /// [`LogSender`](crate::LogSender).
    Log,
    /// [`TwilioSender`](crate::TwilioSender).
    Twilio {
        /// REST base URL.
        api_url: String,
        /// Account SID.
        account_sid: String,
        /// An API key and secret for Basic auth, instead of the account SID and auth token.
        api_key: Option<(String, String)>,
        /// Per-attempt timeout.
        timeout: Duration,
    },
}

/// Proxy's callbacks, the account's STOP-filter flag and the debugger feed.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "--auth-token", "t", "--respect-stop-filter-flag"]);
/// let config = proxy_relay::Config::from_args(&cli.serve)?;
/// assert!(config.hooks.respect_stop_filter_flag);
/// assert_eq!(config.hooks.intercept_timeout.as_secs(), 5);
/// # Ok::<(), proxy_relay::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HookConfig {
    /// `ProxyRespectSmsStopFilterFlag`.
    pub respect_stop_filter_flag: bool,
    /// The InterceptCallbackUrl's time limit.
    pub intercept_timeout: Duration,
    /// One CallbackUrl (or OutOfSessionCallbackUrl) attempt's time limit.
    pub callback_timeout: Duration,
    /// Attempts per CallbackUrl delivery.
    pub callback_attempts: u32,
    /// Where each alert is posted as it is raised.
    pub debugger_webhook_url: Option<String>,
    /// How long alerts are kept.
    pub alert_retention: Duration,
    /// How often the callback URLs and STOP filtering settings are re-read.
    pub settings_refresh: Duration,
}

/// A checked configuration.
///
/// ```
/// use clap::Parser;
/// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "--auth-token", "t"]);
/// let config = proxy_relay::Config::from_args(&cli.serve)?;
/// assert_eq!(config.listen.port(), 8080);
/// # Ok::<(), proxy_relay::ConfigError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database.
    pub database: Database,
    /// The public base URL, without a trailing slash; `None`: `http://` and the bound address.
    pub public_url: Option<String>,
    /// Webhook signing tokens (the first also signs what the demo sends).
    pub auth_tokens: Vec<String>,
    /// The account SID the Proxy API plays (`--twilio-account-sid`, else one generated for
    /// this run): clients authenticate with it and the auth token, as with Twilio.
    pub account_sid: String,
    /// API keys (SID, secret) the Proxy API also accepts (`--twilio-api-key`).
    pub api_keys: Vec<(String, String)>,
    /// How often expired sessions are closed.
    pub session_sweep: Duration,
    /// How long opt-out history is kept (`None`: for ever).
    pub history_retention: Option<Duration>,
    /// How long message texts are kept in it (`None`: as long as the entries).
    pub text_retention: Option<Duration>,
    /// Whether the tokens were generated for this run (and should be shown once).
    pub generated: Vec<&'static str>,
    /// The proxy number pool.
    pub proxy_numbers: Vec<String>,
    /// Callbacks, the STOP-filter flag and the debugger feed.
    pub hooks: HookConfig,
    /// The carrier-layer mode.
    pub mode: CarrierMode,
    /// The sender.
    pub sender: SenderConfig,
    /// PostgreSQL connections per instance.
    pub pg_pool_size: usize,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Attempts per send.
    pub send_attempts: u32,
    /// How long one message's decision may wait for the database before it is journaled.
    pub database_timeout: Duration,
    /// How long a connection may take to send a request head (new or kept alive).
    pub header_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most requests handled at once.
    pub max_in_flight: usize,
    /// The local journal's file (webhooks kept while the database or the provider cannot
    /// take them).
    pub journal: std::path::PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database.redacted())
            .field("public_url", &self.public_url)
            .field("proxy_numbers", &self.proxy_numbers)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Two letters and 32 hex digits.
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Config {
    /// Checks `args`.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the setting.
    ///
    /// ```
    /// use clap::Parser;
    /// let cli = proxy_relay::Cli::parse_from(["proxy-relay", "--twilio-account-sid", "AC1"]);
    /// let err = proxy_relay::Config::from_args(&cli.serve).unwrap_err();
    /// assert_eq!(err.setting, "twilio-account-sid");
    /// ```
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let listen = resolve(&args.listen)?;
        let database = Database::parse(&args.database);
        if let Database::Sqlite(p) = &database {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::new("database", "the SQLite path is empty"));
            }
        }
        let public_url = args
            .public_url
            .as_deref()
            .map(check_public_url)
            .transpose()?;
        let mut generated = Vec::new();
        let mut auth_tokens: Vec<String> = args
            .auth_token
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if auth_tokens.is_empty() {
            auth_tokens.push(random_token());
            generated.push("auth-token");
        }
        let account_sid = match &args.twilio_account_sid {
            Some(sid) if !is_sid(sid, "AC") => {
                return Err(ConfigError::new(
                    "twilio-account-sid",
                    format!("{sid:?} is not an account SID (AC and 32 hex digits)"),
                ))
            }
            Some(sid) => sid.clone(),
            None => {
                generated.push("account-sid");
                format!("AC{}", random_token())
            }
        };
        let api_keys = match (&args.twilio_api_key, &args.twilio_api_secret) {
            (Some(k), _) if !is_sid(k, "SK") => {
                return Err(ConfigError::new(
                    "twilio-api-key",
                    format!("{k:?} is not an API key SID (SK and 32 hex digits)"),
                ))
            }
            (Some(k), Some(secret)) => vec![(k.clone(), secret.clone())],
            _ => Vec::new(),
        };
        let mut proxy_numbers = Vec::with_capacity(args.proxy_numbers.len());
        for n in &args.proxy_numbers {
            let n = n.trim();
            validate_identifier("proxy number", n)
                .map_err(|e| ConfigError::new("proxy-numbers", e.to_string()))?;
            if n.contains(':') {
                return Err(ConfigError::new(
                    "proxy-numbers",
                    format!(
                        "{n:?}: give the bare number; WhatsApp participants get whatsapp:<number>"
                    ),
                ));
            }
            if proxy_numbers.iter().any(|m| m == n) {
                return Err(ConfigError::new(
                    "proxy-numbers",
                    format!("{n:?} is listed twice"),
                ));
            }
            proxy_numbers.push(n.to_owned());
        }
        if proxy_numbers.is_empty() {
            return Err(ConfigError::new("proxy-numbers", "the pool is empty"));
        }
        let sender = match args.sender {
            SenderArg::Log => SenderConfig::Log,
            SenderArg::Twilio => {
                let account_sid = args.twilio_account_sid.clone().ok_or_else(|| {
                    ConfigError::new("twilio-account-sid", "is required with --sender twilio")
                })?;
                if !account_sid.starts_with("AC") || account_sid.len() != 34 {
                    return Err(ConfigError::new(
                        "twilio-account-sid",
                        format!("{account_sid:?} is not an account SID (AC and 32 hex digits)"),
                    ));
                }
                let api_key = match (&args.twilio_api_key, &args.twilio_api_secret) {
                    (Some(k), Some(secret)) => {
                        if !k.starts_with("SK") || k.len() != 34 {
                            return Err(ConfigError::new(
                                "twilio-api-key",
                                format!("{k:?} is not an API key SID (SK and 32 hex digits)"),
                            ));
                        }
                        Some((k.clone(), secret.clone()))
                    }
                    _ => None,
                };
                if api_key.is_none() && generated.contains(&"auth-token") {
                    return Err(ConfigError::new(
                        "auth-token",
                        "is required with --sender twilio unless --twilio-api-key is given (it authenticates the REST calls)",
                    ));
                }
                let api_url = args.twilio_api_url.trim_end_matches('/').to_owned();
                if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
                    return Err(ConfigError::new(
                        "twilio-api-url",
                        format!("{api_url:?} is not an http(s) URL"),
                    ));
                }
                SenderConfig::Twilio {
                    api_url,
                    account_sid,
                    api_key,
                    timeout: Duration::from_millis(args.send_timeout_ms.max(1)),
                }
            }
        };
        if args.pg_pool_size == 0 {
            return Err(ConfigError::new("pg-pool-size", "must be at least 1"));
        }
        Ok(Config {
            listen,
            database,
            public_url,
            auth_tokens,
            account_sid,
            api_keys,
            session_sweep: Duration::from_millis(args.session_sweep_ms.max(10)),
            history_retention: args.history_retention_days.map(days),
            text_retention: args.text_retention_days.map(days),
            generated,
            proxy_numbers,
            hooks: HookConfig {
                respect_stop_filter_flag: args.respect_stop_filter_flag,
                intercept_timeout: Duration::from_millis(args.intercept_timeout_ms.max(1)),
                callback_timeout: Duration::from_millis(args.callback_timeout_ms.max(1)),
                callback_attempts: args.callback_attempts.max(1),
                debugger_webhook_url: match &args.debugger_webhook_url {
                    Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                        return Err(ConfigError::new(
                            "debugger-webhook-url",
                            format!("{u:?} is not an http(s) URL"),
                        ))
                    }
                    u => u.clone(),
                },
                alert_retention: days(args.alert_retention_days),
                settings_refresh: Duration::from_millis(args.settings_refresh_ms.max(10)),
            },
            mode: match args.mode {
                ModeArg::Emulate => CarrierMode::Emulate,
                ModeArg::Mirror => CarrierMode::Mirror,
            },
            sender,
            pg_pool_size: args.pg_pool_size,
            shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
            send_attempts: args.send_attempts.max(1),
            database_timeout: Duration::from_millis(args.database_timeout_ms.max(1)),
            header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
            max_connections: match args.max_connections {
                0 => return Err(ConfigError::new("max-connections", "must be at least 1")),
                n => n,
            },
            max_in_flight: match args.max_in_flight {
                0 => return Err(ConfigError::new("max-in-flight", "must be at least 1")),
                n => n,
            },
            journal: match &args.journal {
                Some(p) if p.as_os_str().is_empty() => {
                    return Err(ConfigError::new("journal", "the path is empty"))
                }
                Some(p) => p.clone(),
                None => default_journal(&Database::parse(&args.database)),
            },
        })
    }
}

/// The address to bind for `--listen`: an IP and port, or a host name and port (resolved once,
/// at start; the first address wins, as for any server binding a name).
fn resolve(listen: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| ConfigError::new("listen", format!("{listen:?} {why}"));
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    if listen.rsplit_once(':').map_or(true, |(host, port)| {
        host.is_empty() || port.parse::<u16>().is_err()
    }) {
        return Err(bad(
            "is not a host and port such as 127.0.0.1:8080 or localhost:8080".into(),
        ));
    }
    let mut addrs = listen
        .to_socket_addrs()
        .map_err(|e| bad(format!("does not resolve: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::new("public-url", format!("{url:?} {why}"));
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("is not an http(s) URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("has no host"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(bad("has a query or fragment; give the base URL only"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The sender a configuration asks for; a Twilio sender asks for delivery updates at
/// `public_url` + [`STATUS_CALLBACK_PATH`](crate::STATUS_CALLBACK_PATH).
///
/// # Errors
///
/// [`ConfigError`](ConfigError) when the HTTP client cannot be built.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let sender = proxy_relay::sender_for(&config, "https://relay.example.com")?;
/// assert_eq!(sender.name(), "log");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sender_for(
    config: &Config,
    public_url: &str,
) -> Result<std::sync::Arc<dyn proxy_optout_host::Sender>, ConfigError> {
    Ok(match &config.sender {
        SenderConfig::Log => std::sync::Arc::new(proxy_optout_host::LogSender),
        SenderConfig::Twilio {
            api_url,
            account_sid,
            api_key,
            timeout,
            ..
        } => {
            let mut sender =
                proxy_optout_host::TwilioSender::new(api_url, account_sid, &config.auth_tokens[0])
                    .map_err(|e| ConfigError::new("twilio-api-url", e.to_string()))?;
            if let Some((key, secret)) = api_key {
                sender = sender.api_key(key, secret);
            }
            std::sync::Arc::new(
                sender
                    .status_callback(format!("{public_url}{}", crate::STATUS_CALLBACK_PATH))
                    .timeout(*timeout),
            )
        }
    })
}

/// Where the journal goes when `--journal` is not given: beside a SQLite database
/// (`relay.db` → `relay.journal.db`), or `proxy-relay.journal.db` for PostgreSQL.
pub(crate) fn default_journal(database: &Database) -> std::path::PathBuf {
    match database {
        Database::Sqlite(p) => {
            let stem = p.file_stem().map_or_else(
                || "proxy-relay".into(),
                |s| s.to_string_lossy().into_owned(),
            );
            p.with_file_name(format!("{stem}.journal.db"))
        }
        Database::Postgres(_) => std::path::PathBuf::from("proxy-relay.journal.db"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_default_journal_sits_beside_the_database() {
        let p = default_journal(&Database::parse("/var/lib/relay/relay.db"));
        assert_eq!(p, PathBuf::from("/var/lib/relay/relay.journal.db"));
        let p = default_journal(&Database::parse("postgres://u@h/db"));
        assert_eq!(p, PathBuf::from("proxy-relay.journal.db"));
    }
}
