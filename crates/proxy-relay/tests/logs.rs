//! What the server logs at info: one line per message, never its text, never a secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{client, start_with_twilio, FakeTwilio, AUTH_TOKEN};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_name_messages_but_never_carry_their_text_or_a_token() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let fake = FakeTwilio::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_twilio(dir.path().join("r.db").to_str().unwrap(), &fake, &[]).await;
    let c = client(&server);
    let s = c
        .create_session("r", "+15551110001", "+15552220002")
        .await
        .unwrap();
    let (rp, dp) = (
        &s.participants[0].proxy_identifier,
        &s.participants[1].proxy_identifier,
    );
    let secret_text = "my door code is 4711";
    c.message("+15551110001", rp, secret_text).await.unwrap();
    c.message("+15552220002", dp, "STOP").await.unwrap();
    c.message("+15551110001", rp, "still there? 4711")
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let handled: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("message handled"))
        .collect();
    assert_eq!(handled.len(), 3, "{logs}");
    assert!(
        handled[0].contains("outcome=\"forwarded\""),
        "{}",
        handled[0]
    );
    assert!(
        handled[1].contains("outcome=\"keyword_dropped\"")
            && handled[1].contains("ledger=\"opted_out\""),
        "{}",
        handled[1]
    );
    assert!(handled[2].contains("outcome=\"refused\""), "{}", handled[2]);
    assert!(
        !logs.contains("4711"),
        "a message text reached the info log:\n{logs}"
    );
    assert!(!logs.contains(AUTH_TOKEN), "a token reached the log");
}
