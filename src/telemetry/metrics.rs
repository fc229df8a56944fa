//! Prometheus metrics (the `prometheus` crate, classic text exposition format) and what the
//! service reports about its readiness. [`super::http`] serves them: `GET /metrics`, `/readyz`
//! (the service consumes from its broker and no trouble is reported: the body then lists each
//! trouble, e.g. the store refusing its credentials).
//!
//! Every metric is declared once in [`METRICS`], with its kind, its label names and its help
//! text. Callers record by name (`inc`, `set`, `observe`); a name that is not declared, or
//! labels other than the declared ones, are dropped with a warning (once per name), so a typo
//! shows in the log instead of as a new series.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

/// Upper bounds of the latency histograms, seconds.
const BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// What a metric measures, in Prometheus' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`inc`).
    Counter,
    /// Set to the current value (`set`).
    Gauge,
    /// Durations in seconds, counted into [`BUCKETS`] (`observe`).
    Histogram,
}

/// One declared metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Full name, `stylestream_` first.
    pub name: &'static str,
    pub kind: MetricKind,
    /// The label names every sample carries; their values must come from a small set.
    pub labels: &'static [&'static str],
    /// The `# HELP` line.
    pub help: &'static str,
}

const fn def(name: &'static str, kind: MetricKind, labels: &'static [&'static str], help: &'static str) -> MetricDef {
    MetricDef { name, kind, labels, help }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric the service records.
pub const METRICS: &[MetricDef] = &[
    def("stylestream_jobs_total", Counter, &["outcome"], "Jobs ended, by outcome."),
    def("stylestream_frames_total", Counter, &[], "Frames styled and written."),
    def("stylestream_messages_total", Counter, &[], "Broker deliveries received."),
    def("stylestream_dead_lettered_total", Counter, &["reason"], "Messages sent to the dead-letter queue, by reason."),
    def("stylestream_stage_seconds", Histogram, &["stage"], "Duration of a job's stages (download, style, upload)."),
    def("stylestream_gpu_busy_seconds_total", Counter, &[], "Time the workers' GPUs spent styling frames."),
    def("stylestream_queue_depth", Gauge, &[], "Messages ready in the job queue."),
    def("stylestream_queue_lag_seconds", Gauge, &[], "Age of the oldest job waiting."),
    def("stylestream_jobs_in_flight", Gauge, &[], "Jobs being processed now."),
    def(
        "stylestream_retries_total",
        Counter,
        &["cause"],
        "Jobs sent back through a retry queue, by cause (store, disk, credentials, other).",
    ),
    def("stylestream_trouble", Gauge, &["cause"], "1 while a cause of retries persists (store, disk, credentials), else 0."),
    def("stylestream_gpu_device_opens_total", Counter, &[], "GPU devices opened (more than one per worker means the device was lost and reopened)."),
    def("stylestream_frames_per_second", Gauge, &[], "Frames styled per second over the last minute, all jobs together."),
    def("stylestream_jobs_cancelled_total", Counter, &[], "Cancellations asked for over HTTP (DELETE /jobs/<id>) that found their job."),
];

/// One registered family.
enum Family {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

struct Inner {
    registry: Registry,
    families: HashMap<&'static str, (Family, &'static [&'static str])>,
    ready: AtomicBool,
    troubles: Mutex<BTreeMap<&'static str, String>>,
    /// Names already warned about (unknown, or recorded with other labels).
    warned: Mutex<BTreeSet<&'static str>>,
}

/// The service's metrics; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of [`METRICS`]; those without labels start at 0.
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut families = HashMap::new();
        for d in METRICS {
            match register(&registry, d) {
                Ok(family) => {
                    families.insert(d.name, (family, d.labels));
                }
                // Only a malformed entry of METRICS gets here; a unit test registers them all.
                Err(e) => tracing::error!(metric = d.name, error = %e, "cannot register the metric"),
            }
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                families,
                ready: AtomicBool::new(false),
                troubles: Mutex::new(BTreeMap::new()),
                warned: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Adds `by` (not negative) to counter `name`.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        if by < 0.0 || by.is_nan() {
            self.warn_once(name, "a counter cannot go down");
            return;
        }
        if let Some(Family::Counter(v)) = self.family(name, MetricKind::Counter) {
            if let Some(values) = self.values(name, labels) {
                if let Ok(c) = v.get_metric_with_label_values(&values) {
                    c.inc_by(by);
                }
            }
        }
    }

    /// Sets gauge `name`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if let Some(Family::Gauge(v)) = self.family(name, MetricKind::Gauge) {
            if let Some(values) = self.values(name, labels) {
                if let Ok(g) = v.get_metric_with_label_values(&values) {
                    g.set(value);
                }
            }
        }
    }

    /// Counts one duration of `secs` seconds into histogram `name`.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], secs: f64) {
        if let Some(Family::Histogram(v)) = self.family(name, MetricKind::Histogram) {
            if let Some(values) = self.values(name, labels) {
                if let Ok(h) = v.get_metric_with_label_values(&values) {
                    h.observe(secs);
                }
            }
        }
    }

    /// Whether the service consumes from its broker (`/readyz` fails while not).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Reports (`Some(detail)`) or clears (`None`) a trouble of kind `cause`: while any is
    /// reported, `/readyz` answers 503 with the details and `stylestream_trouble{cause}` is 1.
    pub fn set_trouble(&self, cause: &'static str, detail: Option<String>) {
        self.set("stylestream_trouble", &[("cause", cause)], if detail.is_some() { 1.0 } else { 0.0 });
        if let Ok(mut t) = self.inner.troubles.lock() {
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
        if !self.inner.ready.load(Ordering::SeqCst) {
            lines.push("broker: not consuming".to_string());
        }
        if let Ok(t) = self.inner.troubles.lock() {
            lines.extend(t.iter().map(|(k, v)| format!("{k}: {v}")));
        }
        if lines.is_empty() {
            Ok(())
        } else {
            Err(lines.join("\n"))
        }
    }

    /// Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        match TextEncoder::new().encode_to_string(&self.inner.registry.gather()) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the metrics");
                String::new()
            }
        }
    }

    /// The family `name`, when it is declared with that kind.
    fn family(&self, name: &'static str, kind: MetricKind) -> Option<&Family> {
        let found = self.inner.families.get(name).map(|(f, _)| f);
        let matches = matches!(
            (found, kind),
            (Some(Family::Counter(_)), MetricKind::Counter)
                | (Some(Family::Gauge(_)), MetricKind::Gauge)
                | (Some(Family::Histogram(_)), MetricKind::Histogram)
        );
        if !matches {
            self.warn_once(name, "not a declared metric of this kind (see telemetry::metrics::METRICS)");
            return None;
        }
        found
    }

    /// The label values of `labels` in the declared order, when the names are the declared ones.
    fn values<'a>(&self, name: &'static str, labels: &[(&'static str, &'a str)]) -> Option<Vec<&'a str>> {
        let declared = self.inner.families.get(name).map(|(_, l)| *l).unwrap_or(&[]);
        let values: Vec<&str> =
            declared.iter().filter_map(|d| labels.iter().find(|(k, _)| k == d).map(|(_, v)| *v)).collect();
        if values.len() != declared.len() || labels.len() != declared.len() {
            self.warn_once(name, "recorded with other labels than declared (see telemetry::metrics::METRICS)");
            return None;
        }
        Some(values)
    }

    fn warn_once(&self, name: &'static str, why: &str) {
        let first = self.inner.warned.lock().map(|mut w| w.insert(name)).unwrap_or(false);
        if first {
            tracing::warn!(metric = name, "metric dropped: {why}");
        }
    }
}

/// Registers `d` in `registry`; a family without labels gets its one sample (0) now.
fn register(registry: &Registry, d: &MetricDef) -> prometheus::Result<Family> {
    let family = match d.kind {
        MetricKind::Counter => {
            let v = CounterVec::new(Opts::new(d.name, d.help), d.labels)?;
            registry.register(Box::new(v.clone()))?;
            if d.labels.is_empty() {
                v.get_metric_with_label_values::<&str>(&[])?;
            }
            Family::Counter(v)
        }
        MetricKind::Gauge => {
            let v = GaugeVec::new(Opts::new(d.name, d.help), d.labels)?;
            registry.register(Box::new(v.clone()))?;
            if d.labels.is_empty() {
                v.get_metric_with_label_values::<&str>(&[])?;
            }
            Family::Gauge(v)
        }
        MetricKind::Histogram => {
            let v = HistogramVec::new(HistogramOpts::new(d.name, d.help).buckets(BUCKETS.to_vec()), d.labels)?;
            registry.register(Box::new(v.clone()))?;
            Family::Histogram(v)
        }
    };
    Ok(family)
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
        assert!(text.contains("stylestream_stage_seconds_bucket{stage=\"style\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("stylestream_stage_seconds_count{stage=\"style\"} 1\n"), "{text}");
        assert!(text.contains("stylestream_stage_seconds_sum{stage=\"style\"} 0.3\n"), "{text}");
        assert!(text.contains("# TYPE stylestream_stage_seconds histogram"), "{text}");
        assert!(text.contains("# HELP stylestream_queue_lag_seconds Age of the oldest job waiting.\n"), "{text}");
    }

    #[test]
    fn every_declared_metric_registers_and_unlabelled_ones_start_at_zero() {
        let m = Metrics::new();
        assert_eq!(m.inner.families.len(), METRICS.len());
        let text = m.render();
        for d in METRICS.iter().filter(|d| d.labels.is_empty() && d.kind != MetricKind::Histogram) {
            assert!(text.contains(&format!("\n{} 0\n", d.name)), "{}: {text}", d.name);
        }
    }

    #[test]
    fn label_values_are_escaped_and_fractions_kept() {
        let m = Metrics::new();
        m.inc("stylestream_dead_lettered_total", &[("reason", "a\"b\\c\nd")], 1.5);
        m.inc("stylestream_gpu_busy_seconds_total", &[], 0.25);
        let text = m.render();
        assert!(text.contains("stylestream_dead_lettered_total{reason=\"a\\\"b\\\\c\\nd\"} 1.5\n"), "{text}");
        assert!(text.contains("stylestream_gpu_busy_seconds_total 0.25\n"), "{text}");
    }

    #[test]
    fn unknown_names_wrong_labels_wrong_kinds_and_negative_counts_are_dropped() {
        let m = Metrics::new();
        let before = m.render();
        m.inc("stylestream_no_such_thing_total", &[], 1.0);
        m.inc("stylestream_jobs_total", &[("result", "succeeded")], 1.0);
        m.inc("stylestream_jobs_total", &[("outcome", "succeeded"), ("extra", "x")], 1.0);
        m.set("stylestream_jobs_total", &[("outcome", "succeeded")], 5.0);
        m.inc("stylestream_frames_total", &[], -3.0);
        assert_eq!(m.render(), before);
    }

    /// Every `stylestream_*` name in `text`, with a histogram's `_bucket`/`_sum`/`_count` cut off.
    fn metric_names(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("stylestream_") {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|base| {
                METRICS.iter().any(|d| d.name == *base && d.kind == MetricKind::Histogram)
            });
            names.push(histogram.unwrap_or(name).to_string());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_grafana_dashboard_only_queries_metrics_we_register() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/grafana-dashboard.json");
        let text = std::fs::read_to_string(&path).expect("config/grafana-dashboard.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        let mut used = Vec::new();
        for p in panels {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            for t in targets {
                let expr = t["expr"].as_str().expect("expr");
                let names = metric_names(expr);
                assert!(!names.is_empty(), "{expr}");
                used.extend(names);
            }
        }
        for v in dashboard["templating"]["list"].as_array().expect("templating") {
            used.extend(metric_names(v["definition"].as_str().unwrap_or("")));
        }
        let declared: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        let unknown: Vec<&String> = used.iter().filter(|n| !declared.contains(&n.as_str())).collect();
        assert!(unknown.is_empty(), "the dashboard queries metrics that Metrics does not register: {unknown:?}");
        for name in ["stylestream_queue_lag_seconds", "stylestream_jobs_in_flight", "stylestream_gpu_device_opens_total", "stylestream_stage_seconds"] {
            assert!(used.iter().any(|u| u == name), "the dashboard shows no {name}");
        }
    }

    #[test]
    fn troubles_show_in_readiness_and_the_trouble_gauge() {
        let m = Metrics::new();
        assert_eq!(m.readiness(), Err("broker: not consuming".to_string()));
        m.set_ready(true);
        assert_eq!(m.readiness(), Ok(()));
        m.set_trouble("disk", Some("full".into()));
        m.set_trouble("credentials", Some("refused".into()));
        assert_eq!(m.readiness(), Err("credentials: refused\ndisk: full".to_string()));
        assert!(m.render().contains("stylestream_trouble{cause=\"disk\"} 1\n"));
        m.set_trouble("disk", None);
        assert_eq!(m.readiness(), Err("credentials: refused".to_string()));
        assert!(m.render().contains("stylestream_trouble{cause=\"disk\"} 0\n"));
    }
}
