//! `proxy-relay`: serve, or play the demo.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use proxy_relay::{Cli, Command, Config, OptoutsCommand, Server};

mod demo;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let demo = matches!(cli.command, Some(Command::Demo));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| (if demo { "error" } else { "info" }).into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not for a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("proxy-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Optouts { action }) = cli.command {
        return match runtime.block_on(optouts(&cli.serve.database, action)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("proxy-relay optouts: {e}");
                ExitCode::from(2)
            }
        };
    }
    if demo {
        return match runtime.block_on(demo::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("proxy-relay demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_args(&cli.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("proxy-relay: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let server = match Server::start(&config, None).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy-relay: {e}");
            return ExitCode::from(2);
        }
    };
    // Generated secrets are shown once, here, so the server is usable with no setup; the
    // configured ones are never printed or logged.
    if config.generated.contains(&"auth-token") {
        eprintln!(
            "proxy-relay: no --auth-token given; webhooks must be signed with this run's token: {}",
            config.auth_tokens[0]
        );
    }
    if config.generated.contains(&"account-sid") {
        eprintln!(
            "proxy-relay: no --twilio-account-sid given; the Proxy API's account for this run: {}",
            config.account_sid
        );
    }
    println!("proxy-relay listening on {}", server.url());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `proxy-relay optouts export|import` against the configured database.
async fn optouts(database: &str, action: OptoutsCommand) -> Result<(), proxy_relay::OptOutsError> {
    use proxy_relay::{ExportFilter, OptOutDb, OptOutsError};
    let db = OptOutDb::open(database).await?;
    match action {
        OptoutsCommand::Export {
            what,
            format,
            scope,
            participant,
            since,
            until,
            state,
            output,
        } => {
            let time = |t: Option<String>| match t {
                None => Ok(None),
                Some(t) => proxy_relay::parse_time(&t).map(Some).ok_or_else(|| {
                    OptOutsError::Filter(format!(
                        "time {t:?} is not a date, an ISO 8601 UTC time or Unix milliseconds"
                    ))
                }),
            };
            let state =
                match state {
                    None => None,
                    Some(s) => Some(s.parse().map_err(|e: proxy_optout::ParseError| {
                        OptOutsError::Filter(e.to_string())
                    })?),
                };
            let filter = ExportFilter {
                scope,
                participant,
                since: time(since)?,
                until: time(until)?,
                state,
            };
            let n = match output {
                Some(path) => {
                    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
                    proxy_relay::export(&db, what, &filter, format, &mut out).await?
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    proxy_relay::export(&db, what, &filter, format, &mut out).await?
                }
            };
            eprintln!("proxy-relay optouts: exported {n} entries");
        }
        OptoutsCommand::Import { file, scope } => {
            let report = if file.as_os_str() == "-" {
                proxy_relay::import(&db, std::io::stdin().lock(), scope.as_deref()).await?
            } else {
                proxy_relay::import(&db, std::fs::File::open(file)?, scope.as_deref()).await?
            };
            eprintln!(
                "proxy-relay optouts: {} rows, {} opted out, {} already opted out",
                report.rows, report.recorded, report.unchanged
            );
        }
    }
    Ok(())
}
