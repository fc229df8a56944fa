//! The service's HTTP endpoints, on axum + hyper in a small tokio runtime of their own (one
//! thread), so that sync callers can start them and nothing the service does can starve them:
//!
//! - `GET /metrics`: Prometheus text format ([`Metrics::render`]);
//! - `GET /healthz`: 200 `ok`, or 503 with why ([`JobBoard::health`]: engine dead, jobs stalled);
//! - `GET /readyz`: 200 `ready`, or 503 with each trouble ([`Metrics::readiness`]);
//! - `GET /jobs`: the job board as JSON ([`JobBoard::snapshot`]);
//! - `DELETE /jobs/<id>`: cancels a job through the board's canceller (needs the token);
//! - `GET /`: the status page ([`super::page`]).
//!
//! With a token configured, `/`, `/jobs` and `DELETE` need `Authorization: Bearer <token>`
//! (401 without it, 403 with another); metrics and health stay open for Prometheus and the
//! probes. Without a token, `DELETE` always answers 403.
//!
//! Bounds, so that an idle or slow client can never hold `/healthz` up: each connection is
//! served by a task of its own and answers one request (no keep-alive); its request headers
//! must arrive within [`HEADER_TIMEOUT`], it is closed after [`CONNECTION_LIFETIME`],
//! handlers time out after [`REQUEST_TIMEOUT`], bodies are limited to [`MAX_BODY`] bytes and
//! headers to [`MAX_HEADER_BUF`]; beyond [`MAX_CONNECTIONS`] open connections, new ones are
//! closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::jobs::JobBoard;
use super::metrics::Metrics;
use super::page::render_status_page;

/// How long a client may take to send its request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take to be answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open, requests and idle time together.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The largest request body (no endpoint reads one).
pub const MAX_BODY: usize = 4096;
/// hyper's read buffer: the largest request line and headers (hyper's minimum is 8 KiB).
pub const MAX_HEADER_BUF: usize = 16 * 1024;
/// Open connections at most.
pub const MAX_CONNECTIONS: usize = 256;

/// Where and how to serve.
#[derive(Clone)]
pub struct HttpOptions {
    /// `host:port`; port 0 picks a free one. Default `127.0.0.1:9898`: this host only.
    pub addr: String,
    /// The bearer token that `/`, `/jobs` and `DELETE /jobs/<id>` need; `None`: those are open
    /// (read-only) and cancelling over HTTP is refused.
    pub token: Option<String>,
    /// `/healthz` fails when jobs are in progress and none made progress for this long.
    pub stall_secs: f64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { addr: "127.0.0.1:9898".to_string(), token: None, stall_secs: 300.0 }
    }
}

impl std::fmt::Debug for HttpOptions {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("stall_secs", &self.stall_secs)
            .finish()
    }
}

/// Why the endpoints could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot start the HTTP server: {0}")]
    Start(std::io::Error),
    #[error("the HTTP server thread ended before it served")]
    ThreadGone,
    #[error("invalid HTTP option {field}: {why}")]
    Options { field: &'static str, why: &'static str },
}

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    board: JobBoard,
    token: Option<Arc<str>>,
    stall_secs: f64,
}

/// Serves the endpoints on `opts.addr` from a thread of its own, for as long as the process
/// runs; returns the bound address once it accepts connections.
pub fn serve_http(opts: HttpOptions, metrics: Metrics, board: JobBoard) -> Result<SocketAddr, HttpError> {
    if !(opts.stall_secs.is_finite() && opts.stall_secs > 0.0) {
        return Err(HttpError::Options { field: "stall_secs", why: "must be a positive number of seconds" });
    }
    if opts.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(HttpError::Options { field: "token", why: "must not be empty (leave it unset for no token)" });
    }
    let listener = std::net::TcpListener::bind(&opts.addr)
        .map_err(|source| HttpError::Bind { addr: opts.addr.clone(), source })?;
    let bound = listener.local_addr().map_err(HttpError::Start)?;
    listener.set_nonblocking(true).map_err(HttpError::Start)?;
    let state = AppState { metrics, board, token: opts.token.map(Arc::from), stall_secs: opts.stall_secs };
    let app = router(state);

    let (started, wait) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        let _ = started.send(Ok(()));
                        accept_loop(listener, app).await;
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            });
        })
        .map_err(HttpError::Start)?;
    match wait.recv() {
        Ok(Ok(())) => Ok(bound),
        Ok(Err(e)) => Err(HttpError::Start(e)),
        Err(_) => Err(HttpError::ThreadGone),
    }
}

/// The routes and their bounds.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/jobs", get(jobs))
        .route("/jobs/{*id}", axum::routing::delete(cancel))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n".to_string()) })
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

/// Accepts connections until the process ends, each served by a task of its own.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max = MAX_CONNECTIONS, "too many HTTP connections: closing a new one");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                // One request per connection, as the hand-written server did: clients that read
                // to the end (scripts, the service tests) get EOF with the answer, and no
                // connection sits idle between Prometheus scrapes.
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BUF)
                .serve_connection(TokioIo::new(stream), service);
            // An error here is the client's (reset, bad request, header timeout): nothing to do.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.frames_per_second.set(s.board.recent_fps());
    let mut r = text(StatusCode::OK, s.metrics.render());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.board.health(s.stall_secs) {
        Ok(()) => text(StatusCode::OK, "ok\n".to_string()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy\n{why}\n")),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.metrics.readiness() {
        Ok(()) => text(StatusCode::OK, "ready\n".to_string()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{why}\n")),
    }
}

async fn jobs(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = refusal(s.token.as_deref(), &headers, false) {
        return denied;
    }
    match serde_json::to_string(&s.board.snapshot()) {
        Ok(json) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json).into_response()
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the jobs: {e}\n")),
    }
}

async fn status_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = refusal(s.token.as_deref(), &headers, false) {
        return denied;
    }
    let html = render_status_page(&s.board.snapshot(), &s.board.health(s.stall_secs), &s.metrics.readiness());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page has no script and no external asset: say so, so a browser runs none.
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

async fn cancel(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(denied) = refusal(s.token.as_deref(), &headers, true) {
        return denied;
    }
    // The canceller is the service's code: run it off the runtime that answers the probes.
    let board = s.board.clone();
    let asked = id.clone();
    let found = match tokio::task::spawn_blocking(move || board.cancel(&asked)).await {
        Ok(found) => found,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("the canceller failed: {e}\n")),
    };
    match found {
        Some(true) => {
            s.metrics.jobs_cancelled_total.inc();
            tracing::info!(job = %id, "job cancelled over HTTP");
            text(StatusCode::ACCEPTED, format!("cancelling {id}\n"))
        }
        Some(false) => text(StatusCode::NOT_FOUND, format!("no job {id}\n")),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "this service cannot cancel jobs\n".to_string()),
    }
}

/// The refusal of a request that may not go on, `None` when it may: with a token, it must
/// carry it; without one, only reads (`cancels == false`) go on.
fn refusal(token: Option<&str>, headers: &HeaderMap, cancels: bool) -> Option<Response> {
    let Some(token) = token else {
        return cancels.then(|| text(StatusCode::FORBIDDEN, "cancelling over HTTP needs a token\n".to_string()));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => {
            let mut r = text(StatusCode::UNAUTHORIZED, "this needs Authorization: Bearer <token>\n".to_string());
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(r)
        }
        Some(given) if same(given.trim().as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(text(StatusCode::FORBIDDEN, "wrong token\n".to_string())),
    }
}

/// Equal bytes, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    /// One request over a fresh connection; the status line and the body.
    fn request(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    fn serve(token: Option<&str>) -> (SocketAddr, Metrics, JobBoard) {
        let (m, b) = (Metrics::new().unwrap(), JobBoard::new());
        let opts = HttpOptions { addr: "127.0.0.1:0".into(), token: token.map(str::to_string), stall_secs: 60.0 };
        let addr = serve_http(opts, m.clone(), b.clone()).expect("serve");
        (addr, m, b)
    }

    #[test]
    fn idle_and_half_sent_connections_do_not_hold_up_healthz() {
        let (addr, _m, _b) = serve(None);
        let _idle = TcpStream::connect(addr).expect("idle connection");
        let mut half = TcpStream::connect(addr).expect("second connection");
        write!(half, "GET /metrics HTTP/1.1\r\nHost: x\r\n").expect("half a request");
        let t = Instant::now();
        assert_eq!(request(addr, "GET", "/healthz", None), (200, "ok\n".to_string()));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn each_connection_answers_one_request_and_closes() {
        let (addr, _m, _b) = serve(None);
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        // No `Connection: close`: the reader still gets EOF right after the answer.
        write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let t = Instant::now();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\nok\n"), "{out}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn a_client_that_never_sends_its_headers_is_dropped() {
        let (addr, _m, _b) = serve(None);
        let mut idle = TcpStream::connect(addr).expect("connect");
        idle.set_read_timeout(Some(HEADER_TIMEOUT + Duration::from_secs(5))).expect("timeout");
        let t = Instant::now();
        let mut buf = Vec::new();
        // The server closes the connection (EOF, perhaps after a 408) once the header time is up.
        let _ = idle.read_to_end(&mut buf);
        assert!(t.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500), "{:?}", t.elapsed());
        assert!(t.elapsed() < HEADER_TIMEOUT + Duration::from_secs(4), "{:?}", t.elapsed());
    }

    #[test]
    fn health_readiness_and_metrics_answer_as_before() {
        let (addr, m, b) = serve(None);
        assert_eq!(request(addr, "GET", "/readyz", None), (503, "not ready\nbroker: not consuming\n".to_string()));
        m.set_ready(true);
        assert_eq!(request(addr, "GET", "/readyz", None), (200, "ready\n".to_string()));
        m.jobs_total.inc(crate::job::OutcomeKind::Succeeded);
        m.jobs_total.inc(crate::job::OutcomeKind::Succeeded);
        let (status, body) = request(addr, "GET", "/metrics", None);
        assert_eq!(status, 200);
        assert!(body.contains("stylestream_jobs_total{outcome=\"succeeded\"} 2\n"), "{body}");
        assert!(body.contains("stylestream_frames_per_second 0\n"), "{body}");
        b.set_engine_alive(false);
        assert_eq!(request(addr, "GET", "/healthz", None), (503, "unhealthy\nengine: not running\n".to_string()));
        assert_eq!(request(addr, "GET", "/nowhere", None).0, 404);
        assert_eq!(request(addr, "POST", "/metrics", None).0, 405);
    }

    #[test]
    fn a_token_guards_the_page_and_the_jobs_but_not_metrics_or_health() {
        let (addr, _m, _b) = serve(Some("s3cret"));
        assert_eq!(request(addr, "GET", "/", None).0, 401);
        assert_eq!(request(addr, "GET", "/jobs", Some("wrong")).0, 403);
        assert_eq!(request(addr, "GET", "/jobs", Some("s3cret")).0, 200);
        assert_eq!(request(addr, "GET", "/", Some("s3cret")).0, 200);
        assert_eq!(request(addr, "GET", "/metrics", None).0, 200);
        assert_eq!(request(addr, "GET", "/healthz", None).0, 200);
    }

    #[test]
    fn options_are_checked() {
        let bad = HttpOptions { addr: "127.0.0.1:0".into(), token: Some(" ".into()), stall_secs: 60.0 };
        assert!(matches!(
            serve_http(bad, Metrics::new().unwrap(), JobBoard::new()),
            Err(HttpError::Options { field: "token", .. })
        ));
        let bad = HttpOptions { addr: "127.0.0.1:0".into(), token: None, stall_secs: 0.0 };
        assert!(matches!(
            serve_http(bad, Metrics::new().unwrap(), JobBoard::new()),
            Err(HttpError::Options { field: "stall_secs", .. })
        ));
        let bad = HttpOptions { addr: "no-such-host.invalid:1".into(), token: None, stall_secs: 1.0 };
        assert!(matches!(serve_http(bad, Metrics::new().unwrap(), JobBoard::new()), Err(HttpError::Bind { .. })));
        assert!(!format!("{:?}", HttpOptions { token: Some("s3cret".into()), ..Default::default() }).contains("s3cret"));
    }
}
