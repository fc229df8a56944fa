//! The status page as a browser renders it (headless Chromium), and the job endpoints over
//! plain HTTP: tokens, cancelling, the JSON board. Built through the library only, with no
//! broker and no GPU.
//!
//! Needs `chromium` (the Makefile's `deps` installs it); without it the test fails, it does
//! not skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stylestream::job::{OutcomeKind, PoisonCode};
use stylestream::telemetry::{serve_http, HttpOptions, JobBoard, Metrics};

/// A job id full of markup: it must show as text and never run.
const NASTY: &str = "<script>alert(1)</script>&\"'";

/// How the serialized DOM shows NASTY as text (quotes need no escaping in text nodes).
const NASTY_AS_TEXT: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;\"'";

fn serve(token: Option<&str>) -> (SocketAddr, Metrics, JobBoard) {
    let metrics = Metrics::new().unwrap();
    let board = JobBoard::new();
    let opts = HttpOptions { addr: "127.0.0.1:0".into(), token: token.map(str::to_string), stall_secs: 600.0 };
    let addr = serve_http(opts, metrics.clone(), board.clone()).expect("serve the endpoints");
    (addr, metrics, board)
}

/// One request over a fresh connection: the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let status =
        out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The Chromium binary on PATH; panics (the test fails) when there is none.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is needed to test the status page and none is on PATH (chromium, chromium-browser, \
         google-chrome): `make deps` installs it, or `apt-get install --no-install-recommends chromium`"
    );
}

/// The DOM of `url` once loaded, as headless Chromium serializes it.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait for chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not dump {url} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium's output");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[test]
fn the_status_page_shows_jobs_dead_letters_and_the_chart_with_every_value_escaped() {
    let (addr, metrics, board) = serve(None);
    metrics.set_ready(true);
    board.started(NASTY, "videos/in.mp4", "udnie<b>", "styled/out.mp4", Some(100));
    board.progress(NASTY, 25);
    board.progress(NASTY, 40);
    board.started("done-1", "videos/a.mp4", "mosaic", "styled/a.mp4", Some(10));
    board.progress("done-1", 10);
    board.finished("done-1", OutcomeKind::Succeeded, None);
    board.started("broken-1", "videos/b.mp4", "mosaic", "styled/b.mp4", None);
    board.finished("broken-1", OutcomeKind::Failed, Some("decode: <img src=x onerror=alert(2)> broken"));
    board.dead_lettered(PoisonCode::CorruptInput);
    board.dead_lettered(PoisonCode::CorruptInput);
    board.dead_lettered(PoisonCode::MalformedJson);

    let dom = dump_dom(&format!("http://{addr}/"));

    // The markup-laden id is text, and nothing it carried became an element.
    assert!(dom.contains(&format!("<td>{NASTY_AS_TEXT}</td>")), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "a script element got in:\n{dom}");
    assert!(!dom.contains("<img"), "an img element got in:\n{dom}");
    assert!(!dom.contains("<b>") && !dom.contains("<i>"), "markup got in:\n{dom}");
    assert!(dom.contains("<td>udnie&lt;b&gt;</td>"), "{dom}");
    assert!(dom.contains("decode: &lt;img src=x onerror=alert(2)&gt; broken"), "{dom}");
    // Progress, the finished and the failed job, the dead letters, the chart.
    assert!(dom.contains("<progress value=\"40\" max=\"100\"></progress>"), "{dom}");
    assert!(dom.contains("40 / 100"), "{dom}");
    assert!(dom.contains("<td>done-1</td><td class=\"ok\">succeeded</td>"), "{dom}");
    assert!(dom.contains("<td>broken-1</td><td class=\"bad\">failed</td>"), "{dom}");
    assert!(
        dom.contains("<tr data-reason=\"corrupt-input\"><td>corrupt-input</td><td class=\"n\">2</td></tr>"),
        "{dom}"
    );
    assert!(
        dom.contains("<tr data-reason=\"malformed-json\"><td>malformed-json</td><td class=\"n\">1</td></tr>"),
        "{dom}"
    );
    let chart = dom.split_once("<svg id=\"fps-chart\"").map(|(_, c)| c).unwrap_or_else(|| panic!("no chart:\n{dom}"));
    assert_eq!(chart.split_once("</svg>").map(|(c, _)| c.matches("<rect").count()), Some(60), "{dom}");
    assert!(dom.contains("readiness: <span class=\"ok\">ok</span>"), "{dom}");
}

#[test]
fn cancelling_needs_the_token_and_reaches_the_canceller_with_the_id() {
    let (addr, metrics, board) = serve(Some("t0ken"));
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    board.set_canceller(Arc::new(move |id: &str| {
        seen.lock().expect("ids").push(id.to_string());
        id == "job-1" || id == "videos/clip 1.mp4"
    }));
    board.started("job-1", "in", "udnie", "out", None);

    assert_eq!(request(addr, "DELETE", "/jobs/job-1", None).0, 401);
    assert_eq!(request(addr, "DELETE", "/jobs/job-1", Some("nope")).0, 403);
    assert!(asked.lock().expect("ids").is_empty(), "the canceller ran without the token");

    assert_eq!(request(addr, "DELETE", "/jobs/job-1", Some("t0ken")), (202, "cancelling job-1\n".to_string()));
    assert_eq!(request(addr, "DELETE", "/jobs/unknown", Some("t0ken")).0, 404);
    assert_eq!(request(addr, "DELETE", "/jobs/videos/clip%201.mp4", Some("t0ken")).0, 202);
    assert_eq!(*asked.lock().expect("ids"), ["job-1", "unknown", "videos/clip 1.mp4"]);
    assert!(metrics.render().contains("stylestream_jobs_cancelled_total 2\n"));

    // The page and the board need the token too; metrics and health do not.
    assert_eq!(request(addr, "GET", "/", None).0, 401);
    assert_eq!(request(addr, "GET", "/jobs", Some("nope")).0, 403);
    assert_eq!(request(addr, "GET", "/metrics", None).0, 200);
    assert_eq!(request(addr, "GET", "/healthz", None).0, 200);
    let (status, json) = request(addr, "GET", "/jobs", Some("t0ken"));
    assert_eq!(status, 200);
    let jobs: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(jobs["in_progress"][0]["id"], "job-1");
    assert_eq!(jobs["fps_per_minute"].as_array().map(Vec::len), Some(60));
}

#[test]
fn without_a_token_cancelling_is_refused_and_the_board_is_open() {
    let (addr, _metrics, board) = serve(None);
    let called = Arc::new(Mutex::new(false));
    let flag = called.clone();
    board.set_canceller(Arc::new(move |_: &str| {
        *flag.lock().expect("flag") = true;
        true
    }));
    board.started(NASTY, "in", "s", "out", Some(3));
    assert_eq!(request(addr, "DELETE", "/jobs/x", None), (403, "cancelling over HTTP needs a token\n".to_string()));
    assert_eq!(request(addr, "DELETE", "/jobs/x", Some("anything")).0, 403);
    assert!(!*called.lock().expect("flag"));
    let (status, json) = request(addr, "GET", "/jobs", None);
    assert_eq!(status, 200);
    let jobs: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    // JSON carries the id as it is; only HTML escapes it.
    assert_eq!(jobs["in_progress"][0]["id"], NASTY);
    assert_eq!(jobs["in_progress"][0]["total_frames"], 3);
}

#[test]
fn healthz_answers_while_a_connection_sits_idle() {
    let (addr, _metrics, _board) = serve(None);
    let _idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).expect("idle connection")).collect();
    let t = Instant::now();
    assert_eq!(request(addr, "GET", "/healthz", None), (200, "ok\n".to_string()));
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}
