//! Code written for Twilio Proxy, through Twilio's own helper libraries (twilio-python from
//! PyPI, twilio-node from npm, unmodified, pinned in `tools/`), against the real server on
//! loopback, on SQLite and on PostgreSQL. The scenarios (`tools/python/proxy_scenario.py`,
//! `tools/node/proxy_scenario.js`) assert every answer; here the server's side is checked:
//! what was sent, and what the ledger holds.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{config, TestDb, ACCOUNT_SID, AUTH_TOKEN};
use proxy_optout::OptState;
use proxy_relay::{MemorySender, Sender, Server};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `program script` against a fresh server and checks the server's side afterwards.
async fn scenario(db: &TestDb, program: &str, script: &str) {
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(
        &config(&db.url(), &[]),
        Some(sender.clone() as Arc<dyn Sender>),
    )
    .await
    .unwrap();
    let url = server.url();
    let out = tokio::process::Command::new(program)
        .arg(repo().join(script))
        .env("PROXY_URL", &url)
        .env("ACCOUNT_SID", ACCOUNT_SID)
        .env("AUTH_TOKEN", AUTH_TOKEN)
        .env_remove("TWILIO_EDGE")
        .env_remove("TWILIO_REGION")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("scenario passed"), "{stdout}");
    // The server's side: the forwards and the one MessageInteraction that was allowed went
    // out; the STOPs, the refused message and the refused MessageInteraction did not.
    let sent = sender.sent();
    let bodies: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    for expected in [
        "on my way",
        "see you soon",
        "START",
        "thanks",
        "your driver is here",
    ] {
        assert!(
            bodies.contains(&expected),
            "{expected:?} not sent: {bodies:?}"
        );
    }
    for never in ["STOP", "are you there?", "rate your ride"] {
        assert!(!bodies.contains(&never), "{never:?} was sent: {bodies:?}");
    }
    // The rider's STOP stands in the ledger for the rider's proxy number.
    let to_rider = sent
        .iter()
        .find(|m| m.body == "your driver is here")
        .unwrap();
    assert_eq!(
        server
            .app()
            .db()
            .state(&to_rider.from, &to_rider.to)
            .await
            .unwrap(),
        OptState::OptedOut
    );
    server.shutdown().await.unwrap();
}

async fn python(db: &TestDb) {
    let python = std::env::var("PROXY_OPTOUT_PYTHON").expect("PROXY_OPTOUT_PYTHON is set");
    scenario(db, &python, "tools/python/proxy_scenario.py").await;
}

async fn node(db: &TestDb) {
    let node = std::env::var("PROXY_OPTOUT_NODE").expect("PROXY_OPTOUT_NODE is set");
    scenario(db, &node, "tools/node/proxy_scenario.js").await;
}

mod twilio_python {
    #[cfg_attr(
        not(python_tests),
        ignore = "twilio-python tests skipped: set PROXY_OPTOUT_PYTHON to a Python with tools/python/requirements.txt installed (.ci/run does)"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::python(&crate::common::TestDb::sqlite()).await;
    }

    #[cfg_attr(
        not(all(python_tests, pg_tests)),
        ignore = "twilio-python on PostgreSQL skipped: set PROXY_OPTOUT_PYTHON and PROXY_OPTOUT_PG_URL (.ci/run does)"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::python(&crate::common::TestDb::postgres("proxy_python").await).await;
    }
}

mod twilio_node {
    #[cfg_attr(
        not(node_tests),
        ignore = "twilio-node tests skipped: set PROXY_OPTOUT_NODE to a Node with tools/node installed by npm ci (.ci/run does)"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::node(&crate::common::TestDb::sqlite()).await;
    }

    #[cfg_attr(
        not(all(node_tests, pg_tests)),
        ignore = "twilio-node on PostgreSQL skipped: set PROXY_OPTOUT_NODE and PROXY_OPTOUT_PG_URL (.ci/run does)"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::node(&crate::common::TestDb::postgres("proxy_node").await).await;
    }
}
