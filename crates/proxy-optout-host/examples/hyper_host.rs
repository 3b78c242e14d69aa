//! The pipeline without axum: a plain hyper server hands each request to
//! [`Pipeline::serve`] as a method, a target, headers and a body, and writes back the status,
//! headers and body it answers. A host on actix, warp or anything else does the same.
//!
//! ```text
//! cargo run -p proxy-optout-host --example hyper_host
//! ```

use std::convert::Infallible;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use proxy_optout_host::{Pipeline, WebhookRequest, WebhookResponse};

/// Answers one hyper request through the pipeline.
pub async fn handle(pipeline: Pipeline, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    // Twilio's forms are small; a body over the limit is the pipeline's 413.
    let limit = proxy_optout_twilio::MAX_FORM_BYTES + 1;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::from(vec![0; limit]),
    };
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut webhook = WebhookRequest::new(parts.method.as_str(), target, &body);
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            webhook = webhook.header(name.as_str(), value);
        }
    }
    into_hyper(pipeline.serve(webhook).await)
}

fn into_hyper(answer: WebhookResponse) -> Response<Full<Bytes>> {
    let (status, headers, body) = answer.into_parts();
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error\n"))))
}

/// Serves `pipeline` on `listener` until the task is dropped.
pub async fn serve(pipeline: Pipeline, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| {
                let pipeline = pipeline.clone();
                async move { Ok::<_, Infallible>(handle(pipeline, r).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let ledger = proxy_optout_host::SqliteLedger::open("optout.db").await?;
    // No sessions yet, and a sender that only logs: enough to see the webhook answer.
    let routing = |_: &str, _: &str| Ok(None);
    let pipeline = Pipeline::builder(ledger, routing, proxy_optout_host::LogSender)
        .auth_token(std::env::var("TWILIO_AUTH_TOKEN").unwrap_or_else(|_| "token".into()))
        .public_url(&url)
        .start()
        .await?;
    println!("serving on {url}");
    serve(pipeline, listener).await;
    Ok(())
}
