//! An existing ride-hailing service with the relay added: its own `rides` table (SQLite or
//! PostgreSQL), its own `POST /rides`, and Twilio's two webhooks from `proxy-optout-host`.
//!
//! ```text
//! cargo run -p proxy-optout-host --example rides -- --database rides.db \
//!     --public-url https://rides.example.com --account-sid AC… --auth-token …
//! ```

use std::net::SocketAddr;

use clap::Parser;

mod service;

/// A ride-hailing service that relays texts between riders and drivers.
#[derive(Parser, Debug)]
struct Args {
    /// The rides table: a SQLite file (in --dir) or a postgres:// URL.
    #[arg(long, default_value = "rides.db")]
    database: String,
    /// Where the SQLite files and the journal go.
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL Twilio posts to (signatures are checked against it).
    #[arg(long)]
    public_url: Option<String>,
    /// Twilio's REST API.
    #[arg(long, default_value = "https://api.twilio.com")]
    twilio_api_url: String,
    /// The Twilio account.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    account_sid: String,
    /// The account's auth token.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: String,
}

#[tokio::main]
async fn main() -> Result<(), service::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let url = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().unwrap_or(args.listen)));
    let config = service::Config {
        database: args.database,
        dir: args.dir,
        public_url: url,
        twilio_api_url: args.twilio_api_url,
        account_sid: args.account_sid,
        auth_token: args.auth_token,
    };
    let rides = service::Rides::open(&config.database, &config.dir).await?;
    let pipeline = service::relay(rides.clone(), &config).await?; // glue
    println!("serving on {}", config.public_url);
    axum::serve(listener, service::app(rides, &pipeline))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    pipeline.shutdown().await; // glue
    Ok(())
}
