//! Prometheus metrics (text exposition format) and the health endpoints, served over plain
//! HTTP/1.1 by a small thread: `GET /metrics`, `/healthz` (the process runs), `/readyz` (the
//! service consumes from its broker and no trouble is reported: the body then lists each
//! trouble, e.g. the store refusing its credentials).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds of the latency histograms, seconds.
const BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct State {
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
}

/// The service's metrics; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    ready: Arc<AtomicBool>,
    troubles: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::default();
        if let Ok(mut s) = m.state.lock() {
            for (name, kind, help) in [
                ("stylestream_jobs_total", "counter", "Jobs ended, by outcome."),
                ("stylestream_frames_total", "counter", "Frames styled and written."),
                ("stylestream_messages_total", "counter", "Broker deliveries received."),
                ("stylestream_dead_lettered_total", "counter", "Messages sent to the dead-letter queue, by reason."),
                ("stylestream_stage_seconds", "histogram", "Duration of a job's stages (download, style, upload)."),
                ("stylestream_gpu_busy_seconds_total", "counter", "Time the workers' GPUs spent styling frames."),
                ("stylestream_queue_depth", "gauge", "Messages ready in the job queue."),
                ("stylestream_jobs_in_flight", "gauge", "Jobs being processed now."),
                ("stylestream_retries_total", "counter", "Jobs sent back through a retry queue, by cause (store, disk, credentials, other)."),
                ("stylestream_trouble", "gauge", "1 while a cause of retries persists (store, disk, credentials), else 0."),
            ] {
                s.help.insert(name, (kind, help));
            }
        }
        m
    }

    pub fn inc(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        if let Ok(mut s) = self.state.lock() {
            *s.counters.entry((name, labels(l))).or_default() += by;
        }
    }

    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], value: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.gauges.insert((name, labels(l)), value);
        }
    }

    pub fn observe(&self, name: &'static str, l: &[(&'static str, &str)], secs: f64) {
        if let Ok(mut s) = self.state.lock() {
            let h = s.histograms.entry((name, labels(l))).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Reports (`Some(detail)`) or clears (`None`) a trouble of kind `cause`: while any is
    /// reported, `/readyz` answers 503 with the details and `stylestream_trouble{cause}` is 1.
    pub fn set_trouble(&self, cause: &'static str, detail: Option<String>) {
        self.set("stylestream_trouble", &[("cause", cause)], if detail.is_some() { 1.0 } else { 0.0 });
        if let Ok(mut t) = self.troubles.lock() {
            match detail {
                Some(d) => {
                    t.insert(cause, d);
                }
                None => {
                    t.remove(cause);
                }
            }
        }
    }

    /// `Ok(())` when ready, else what is wrong (one line each).
    pub fn readiness(&self) -> Result<(), String> {
        let mut lines = Vec::new();
        if !self.ready.load(Ordering::SeqCst) {
            lines.push("broker: not consuming".to_string());
        }
        if let Ok(t) = self.troubles.lock() {
            lines.extend(t.iter().map(|(k, v)| format!("{k}: {v}")));
        }
        if lines.is_empty() {
            Ok(())
        } else {
            Err(lines.join("\n"))
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let Ok(s) = self.state.lock() else { return String::new() };
        let mut out = String::new();
        let fmt_labels = |l: &Labels, extra: Option<(&str, String)>| -> String {
            let mut parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        for (name, (kind, help)) in &s.help {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            match *kind {
                "counter" => {
                    for ((n, l), v) in s.counters.iter().filter(|((n, _), _)| n == name) {
                        out.push_str(&format!("{n}{} {v}\n", fmt_labels(l, None)));
                    }
                }
                "gauge" => {
                    for ((n, l), v) in s.gauges.iter().filter(|((n, _), _)| n == name) {
                        out.push_str(&format!("{n}{} {v}\n", fmt_labels(l, None)));
                    }
                }
                _ => {
                    for ((n, l), h) in s.histograms.iter().filter(|((n, _), _)| n == name) {
                        for (i, b) in BUCKETS.iter().enumerate() {
                            out.push_str(&format!("{n}_bucket{} {}\n", fmt_labels(l, Some(("le", b.to_string()))), h.counts[i]));
                        }
                        out.push_str(&format!("{n}_bucket{} {}\n", fmt_labels(l, Some(("le", "+Inf".into()))), h.count));
                        out.push_str(&format!("{n}_sum{} {}\n{n}_count{} {}\n", fmt_labels(l, None), h.sum, fmt_labels(l, None), h.count));
                    }
                }
            }
        }
        out
    }

    /// Serves /metrics, /healthz and /readyz on `addr` from a thread; returns the bound address
    /// (port 0 picks a free one).
    pub fn serve(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let me = self.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut header = String::new();
                while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", me.render()),
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    "/readyz" => match me.readiness() {
                        Ok(()) => ("200 OK", "ready\n".to_string()),
                        Err(why) => ("503 Service Unavailable", format!("not ready\n{why}\n")),
                    },
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let mut w = &stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
        Ok(bound)
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let m = Metrics::new();
        m.inc("stylestream_jobs_total", &[("outcome", "succeeded")], 1.0);
        m.inc("stylestream_jobs_total", &[("outcome", "succeeded")], 1.0);
        m.set("stylestream_queue_depth", &[], 7.0);
        m.observe("stylestream_stage_seconds", &[("stage", "style")], 0.3);
        let text = m.render();
        assert!(text.contains("stylestream_jobs_total{outcome=\"succeeded\"} 2\n"), "{text}");
        assert!(text.contains("stylestream_queue_depth 7\n"), "{text}");
        assert!(text.contains("stylestream_stage_seconds_bucket{stage=\"style\",le=\"0.25\"} 0\n"), "{text}");
        assert!(text.contains("stylestream_stage_seconds_bucket{stage=\"style\",le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("stylestream_stage_seconds_count{stage=\"style\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE stylestream_stage_seconds histogram"), "{text}");
    }
}
