//! The README's axum handler (examples/axum_relay.rs) over real HTTP on loopback: a signed
//! webhook gets TwiML, a forged one 403, a missing signature 400.

#[path = "../examples/axum_relay.rs"]
#[allow(dead_code)]
mod axum_relay;

use std::sync::Arc;

use proxy_optout::{AsyncRelay, MemoryStore};
use proxy_optout_twilio::{sign, Form, Validator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
    signature: Option<&str>,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sig = signature.map_or(String::new(), |s| format!("X-Twilio-Signature: {s}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: internal:3000\r\nContent-Type: application/x-www-form-urlencoded\r\n{sig}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn signed_forged_and_unsigned_webhooks() {
    // Twilio was told the public URL; the app listens elsewhere (a TLS proxy in between).
    let public = "https://relay.example.com";
    let app = Arc::new(axum_relay::App {
        public_base_url: public.into(),
        validator: Validator::new("token"),
        relay: AsyncRelay::new(MemoryStore::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum_relay::router(app))
            .await
            .unwrap()
    });

    let body = "MessageSid=SM1&From=%2B15551110001&To=%2B15550000100&Body=STOP&FromCity=";
    let path = "/twilio/sms?tenant=acme&x=it's";
    let url = format!("{public}{path}");
    let sig = sign("token", &url, &Form::parse(body.as_bytes()).unwrap());

    let ok = post(addr, path, body, Some(&sig)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("content-type: text/xml"), "{ok}");
    assert!(
        ok.contains("<Response><Message>You have successfully been unsubscribed"),
        "{ok}"
    );

    let forged = post(addr, path, &body.replace("STOP", "START"), Some(&sig)).await;
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    let wrong_url = post(addr, "/twilio/sms?tenant=other&x=it's", body, Some(&sig)).await;
    assert!(wrong_url.starts_with("HTTP/1.1 403"), "{wrong_url}");
    let unsigned = post(addr, path, body, None).await;
    assert!(unsigned.starts_with("HTTP/1.1 400"), "{unsigned}");
}

#[test]
fn the_readme_shows_the_examples_handler() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/axum_relay.rs");
    let start =
        readme.find("```rust,ignore\n").expect("the handler block") + "```rust,ignore\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    assert!(
        block.len() > 500 && example.contains(block),
        "README and example drifted apart"
    );
}
