//! Serving HTTP with limits a hostile client cannot get around: a deadline for request headers,
//! a deadline and a size limit for bodies, a budget for the memory all bodies in flight may
//! take, a request id on every answer, and the Iceberg REST prefix accepted percent-encoded.
//!
//! `axum::serve` sets no header timeout (hyper needs a timer for that), so the accept loop is
//! Loch's own, on hyper-util's auto (HTTP/1 and HTTP/2) connection builder.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::error::ApiError;

/// Limits of the HTTP layer (`http.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body (of a streamed ingest: largest Arrow IPC message).
    pub max_body_bytes: u64,
    /// Largest streamed ingest body (its memory stays bounded; this caps one transaction).
    pub max_ingest_bytes: u64,
    /// Bytes all request bodies being read or handled may hold together.
    pub max_in_flight_body_bytes: u64,
    /// Time a client has to send the request line and headers.
    pub header_read_timeout: Duration,
    /// Time a client has to send the whole body.
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_ingest_bytes: 16 << 30,
            max_in_flight_body_bytes: 256 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The budget of body bytes in flight, shared by all connections.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    limits: HttpLimits,
    permits: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget for `limits`.
    pub fn new(limits: HttpLimits) -> Self {
        let permits = usize::try_from(limits.max_in_flight_body_bytes).unwrap_or(usize::MAX >> 4).min(usize::MAX >> 4);
        Self { limits, permits: Arc::new(Semaphore::new(permits)) }
    }
}

tokio::task_local! {
    /// The id of the request being handled, for error bodies and logs.
    pub static REQUEST_ID: String;
}

/// The id of the request this task handles, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Middleware: gives every request an id (its `x-request-id` if it sent a sane one), runs the
/// handler inside a span and the task-local [`REQUEST_ID`], and answers with the id.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string(), str::to_string);
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = REQUEST_ID.scope(id.clone(), tracing::Instrument::instrument(next.run(request), span)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Whether a request's body goes to its handler unread, to be streamed: the ingest of a keyed
/// table's changes, whose body may be far larger than memory should hold.
pub fn streams_body(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::POST
        && path.strip_prefix("/api/v1/tables/").is_some_and(|rest| rest.split('/').count() == 4)
        && path.ends_with("/changes")
}

/// Middleware: reads the whole request body before the handler runs, within the size limit,
/// the body deadline and the shared memory budget; the budget is held until the answer.
pub async fn read_body(budget: BodyBudget, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let has_body = declared.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body || streams_body(&parts.method, parts.uri.path()) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let limits = budget.limits;
    let mut body = body;
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        drain(&mut body).await;
        return closing(too_large_error(limits.max_body_bytes));
    }
    let mut held = Vec::new();
    // A declared length is a promise, not memory to hand out up front.
    let mut collected = Vec::with_capacity(declared.map_or(0, |n| n.min(1 << 20) as usize));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if (collected.len() + data.len()) as u64 > limits.max_body_bytes {
                return Err(too_large_error(limits.max_body_bytes));
            }
            let size = u32::try_from(data.len()).map_err(|_| too_large_error(limits.max_body_bytes))?;
            let permit = budget.permits.clone().try_acquire_many_owned(size).map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "the server is reading too many request bodies at once; retry shortly",
                )
            })?;
            held.push(permit);
            collected.extend_from_slice(&data);
        }
        Ok::<_, ApiError>(())
    };
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            drain(&mut body).await;
            return closing(e);
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                format!("the request body did not arrive within {:?}", limits.body_read_timeout),
            ));
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(Bytes::from(collected)))).await;
    drop(held);
    response
}

/// Reads and drops what is left of a refused body, a little of it for a short while: a client
/// still sending when the connection closes would see a reset instead of the answer.
pub(crate) async fn drain(body: &mut Body) {
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match body.frame().await {
                Some(Ok(frame)) => left = left.saturating_sub(frame.data_ref().map_or(0, |d| d.len())),
                _ => break,
            }
        }
    })
    .await;
}

fn too_large_error(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLargeException",
        format!("the request body is larger than the limit of {max} bytes"),
    )
}

/// An error answered before the body was read: the connection cannot carry another request.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Rewrites `/api/iceberg/rest/v1/catalogs%2F{name}/...` (the prefix `catalogs/{name}` sent as one
/// percent-encoded segment, as DuckDB does) to the plain form before routing.
pub fn decode_prefix<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    const BASE: &str = "/api/iceberg/rest/v1/";
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix(BASE) else { return request };
    if !rest.get(..11).is_some_and(|p| p.eq_ignore_ascii_case("catalogs%2f")) {
        return request;
    }
    let mut rewritten = format!("{BASE}catalogs/{}", &rest[11..]);
    if let Some(query) = request.uri().query() {
        rewritten.push('?');
        rewritten.push_str(query);
    }
    if let Ok(uri) = rewritten.parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// Serves `app` on `listener` until `stop` turns true, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let service = tower::ServiceBuilder::new().map_request(decode_prefix::<Body>).service(app);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let connection_service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), connection_service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open 30 s after shutdown began; closing them");
    }
    Ok(())
}

/// The peer of a request, when served by [`serve`].
pub fn peer(request: &Request) -> Option<SocketAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_prefix_is_decoded() {
        let request = axum::http::Request::builder()
            .uri("/api/iceberg/rest/v1/catalogs%2Flocal/namespaces?pageToken=")
            .body(())
            .unwrap();
        assert_eq!(decode_prefix(request).uri(), "/api/iceberg/rest/v1/catalogs/local/namespaces?pageToken=");
        let lower =
            axum::http::Request::builder().uri("/api/iceberg/rest/v1/catalogs%2flocal/namespaces").body(()).unwrap();
        assert_eq!(decode_prefix(lower).uri().path(), "/api/iceberg/rest/v1/catalogs/local/namespaces");
        let plain = axum::http::Request::builder().uri("/api/iceberg/rest/v1/namespaces/a%2Fb").body(()).unwrap();
        assert_eq!(decode_prefix(plain).uri().path(), "/api/iceberg/rest/v1/namespaces/a%2Fb");
    }
}
