//! Prometheus metrics (the `prometheus` crate, classic text exposition format) and what the
//! service reports about its readiness. [`super::http`] serves them: `GET /metrics`, `/readyz`
//! (the service consumes from its broker and no trouble is reported: the body then lists each
//! trouble, e.g. the store refusing its credentials).
//!
//! Every metric is a typed handle, declared once in [`Families::new`] with its name and help
//! text. Label values come from enums ([`Label`]): a job's outcome, a dead-letter reason, a
//! cause, a stage — so a typo cannot become a new series, and every label set is bounded.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::job::outcome::{Cause, OutcomeKind, PoisonCode};

/// Upper bounds of the latency histograms, seconds.
const BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A label: its name, and the value of each of its (few) values.
pub trait Label: Copy {
    const NAME: &'static str;
    fn value(self) -> &'static str;
}

impl Label for OutcomeKind {
    const NAME: &'static str = "outcome";
    fn value(self) -> &'static str {
        self.metric_label()
    }
}

impl Label for PoisonCode {
    const NAME: &'static str = "reason";
    fn value(self) -> &'static str {
        self.as_str()
    }
}

impl Label for Cause {
    const NAME: &'static str = "cause";
    fn value(self) -> &'static str {
        self.as_str()
    }
}

/// A stage of a job, as `stylestream_stage_seconds` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a free job slot.
    Wait,
    /// Checks, the done check and the download.
    Download,
    /// In the dataflow engine.
    Style,
    /// Upload, move and manifest.
    Upload,
}

impl Label for Stage {
    const NAME: &'static str = "stage";
    fn value(self) -> &'static str {
        match self {
            Stage::Wait => "wait",
            Stage::Download => "download",
            Stage::Style => "style",
            Stage::Upload => "upload",
        }
    }
}

/// A counter without labels.
pub struct Counter(prometheus::Counter);

impl Counter {
    /// Adds `by`; a negative or NaN amount is refused (a counter only goes up).
    pub fn add(&self, by: f64) {
        if by >= 0.0 {
            self.0.inc_by(by);
        }
    }

    pub fn inc(&self) {
        self.0.inc();
    }
}

/// A counter with one label.
pub struct CounterBy<L: Label>(CounterVec, PhantomData<L>);

impl<L: Label> CounterBy<L> {
    pub fn inc(&self, label: L) {
        self.0.with_label_values(&[label.value()]).inc();
    }
}

/// A gauge without labels.
pub struct Gauge(prometheus::Gauge);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.set(value);
    }
}

/// A gauge with one label.
pub struct GaugeBy<L: Label>(GaugeVec, PhantomData<L>);

impl<L: Label> GaugeBy<L> {
    pub fn set(&self, label: L, value: f64) {
        self.0.with_label_values(&[label.value()]).set(value);
    }
}

/// Durations in seconds, counted into [`BUCKETS`], with one label.
pub struct HistogramBy<L: Label>(HistogramVec, PhantomData<L>);

impl<L: Label> HistogramBy<L> {
    pub fn observe(&self, label: L, secs: f64) {
        self.0.with_label_values(&[label.value()]).observe(secs);
    }
}

/// Registers metrics in one registry.
struct Declare<'r>(&'r Registry);

impl Declare<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(&self, name: &str, help: &str) -> prometheus::Result<Counter> {
        Ok(Counter(self.register(prometheus::Counter::with_opts(Opts::new(name, help))?)?))
    }

    fn counter_by<L: Label>(&self, name: &str, help: &str) -> prometheus::Result<CounterBy<L>> {
        Ok(CounterBy(self.register(CounterVec::new(Opts::new(name, help), &[L::NAME])?)?, PhantomData))
    }

    fn gauge(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        Ok(Gauge(self.register(prometheus::Gauge::with_opts(Opts::new(name, help))?)?))
    }

    fn gauge_by<L: Label>(&self, name: &str, help: &str) -> prometheus::Result<GaugeBy<L>> {
        Ok(GaugeBy(self.register(GaugeVec::new(Opts::new(name, help), &[L::NAME])?)?, PhantomData))
    }

    fn histogram_by<L: Label>(&self, name: &str, help: &str) -> prometheus::Result<HistogramBy<L>> {
        let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
        Ok(HistogramBy(self.register(HistogramVec::new(opts, &[L::NAME])?)?, PhantomData))
    }
}

/// Every metric the service records, each declared once.
pub struct Families {
    pub jobs_total: CounterBy<OutcomeKind>,
    pub frames_total: Counter,
    pub messages_total: Counter,
    pub dead_lettered_total: CounterBy<PoisonCode>,
    pub stage_seconds: HistogramBy<Stage>,
    pub gpu_busy_seconds_total: Counter,
    pub queue_depth: Gauge,
    pub queue_lag_seconds: Gauge,
    pub jobs_in_flight: Gauge,
    pub retries_total: CounterBy<Cause>,
    trouble: GaugeBy<Cause>,
    pub gpu_device_opens_total: Counter,
    pub frames_per_second: Gauge,
    pub jobs_cancelled_total: Counter,
    pub segments_total: Counter,
    pub stitches_total: Counter,
}

impl Families {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let d = Declare(registry);
        Ok(Self {
            jobs_total: d.counter_by("stylestream_jobs_total", "Jobs ended, by outcome.")?,
            frames_total: d.counter("stylestream_frames_total", "Frames styled and written.")?,
            messages_total: d.counter("stylestream_messages_total", "Broker deliveries received.")?,
            dead_lettered_total: d
                .counter_by("stylestream_dead_lettered_total", "Messages sent to the dead-letter queue, by reason.")?,
            stage_seconds: d.histogram_by(
                "stylestream_stage_seconds",
                "Duration of a job's stages (wait, download, style, upload).",
            )?,
            gpu_busy_seconds_total: d
                .counter("stylestream_gpu_busy_seconds_total", "Time the workers' GPUs spent styling frames.")?,
            queue_depth: d.gauge("stylestream_queue_depth", "Messages ready in the job queue.")?,
            queue_lag_seconds: d.gauge("stylestream_queue_lag_seconds", "Age of the oldest job waiting.")?,
            jobs_in_flight: d.gauge("stylestream_jobs_in_flight", "Jobs being processed now.")?,
            retries_total: d.counter_by(
                "stylestream_retries_total",
                "Jobs sent back through a retry queue, by cause (store, disk, credentials, other).",
            )?,
            trouble: d.gauge_by(
                "stylestream_trouble",
                "1 while a cause of retries persists (store, disk, credentials), else 0.",
            )?,
            gpu_device_opens_total: d.counter(
                "stylestream_gpu_device_opens_total",
                "GPU devices opened (more than one per worker means the device was lost and reopened).",
            )?,
            frames_per_second: d.gauge(
                "stylestream_frames_per_second",
                "Frames styled per second over the last minute, all jobs together.",
            )?,
            jobs_cancelled_total: d.counter(
                "stylestream_jobs_cancelled_total",
                "Cancellations asked for over HTTP (DELETE /jobs/<id>) that found their job.",
            )?,
            segments_total: d.counter(
                "stylestream_segments_total",
                "Segments of cut videos styled and committed by this instance.",
            )?,
            stitches_total: d
                .counter("stylestream_stitches_total", "Cut videos stitched into their output by this instance.")?,
        })
    }
}

struct Inner {
    registry: Registry,
    families: Families,
    ready: AtomicBool,
    troubles: Mutex<BTreeMap<&'static str, String>>,
}

/// The service's metrics; cheap to clone (shared). Its fields are the typed handles.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.inner.families
    }
}

impl Metrics {
    /// A registry with every metric; those without labels start at 0. Fails only on a metric
    /// declared twice or with a malformed name (a unit test builds it).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let families = Families::new(&registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                families,
                ready: AtomicBool::new(false),
                troubles: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The name and type (`counter`, `gauge`, `histogram`) of every metric registered.
    pub fn declared(&self) -> Vec<(String, String)> {
        self.inner
            .registry
            .gather()
            .iter()
            .map(|f| (f.name().to_string(), format!("{:?}", f.get_field_type()).to_ascii_lowercase()))
            .collect()
    }

    /// Whether the service consumes from its broker (`/readyz` fails while not).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Reports (`Some(detail)`) or clears (`None`) a trouble of kind `cause`: while any is
    /// reported, `/readyz` answers 503 with the details and `stylestream_trouble{cause}` is 1.
    pub fn set_trouble(&self, cause: Cause, detail: Option<String>) {
        self.trouble.set(cause, if detail.is_some() { 1.0 } else { 0.0 });
        if let Ok(mut t) = self.inner.troubles.lock() {
            match detail {
                Some(d) => {
                    t.insert(cause.as_str(), d);
                }
                None => {
                    t.remove(cause.as_str());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let m = Metrics::new().unwrap();
        m.jobs_total.inc(OutcomeKind::Succeeded);
        m.jobs_total.inc(OutcomeKind::Succeeded);
        m.jobs_total.inc(OutcomeKind::AlreadyDone);
        m.queue_depth.set(7.0);
        m.stage_seconds.observe(Stage::Style, 0.3);
        let text = m.render();
        assert!(text.contains("stylestream_jobs_total{outcome=\"succeeded\"} 2\n"), "{text}");
        assert!(text.contains("stylestream_jobs_total{outcome=\"already_done\"} 1\n"), "{text}");
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
    fn every_metric_registers_and_unlabelled_ones_start_at_zero() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for name in [
            "stylestream_frames_total",
            "stylestream_messages_total",
            "stylestream_gpu_busy_seconds_total",
            "stylestream_queue_depth",
            "stylestream_queue_lag_seconds",
            "stylestream_jobs_in_flight",
            "stylestream_gpu_device_opens_total",
            "stylestream_frames_per_second",
            "stylestream_jobs_cancelled_total",
        ] {
            assert!(text.contains(&format!("\n{name} 0\n")), "{name}: {text}");
        }
        // Labelled families appear once a value is recorded.
        assert!(!text.contains("stylestream_dead_lettered_total{"), "{text}");
        m.dead_lettered_total.inc(PoisonCode::Cancelled);
        assert!(m.render().contains("stylestream_dead_lettered_total{reason=\"cancelled\"} 1\n"));
    }

    #[test]
    fn label_values_come_from_the_enums_and_fractions_are_kept() {
        let m = Metrics::new().unwrap();
        for code in PoisonCode::ALL {
            m.dead_lettered_total.inc(code);
        }
        m.gpu_busy_seconds_total.add(0.25);
        m.frames_total.add(-3.0);
        let text = m.render();
        assert!(text.contains("stylestream_dead_lettered_total{reason=\"retry-budget-spent\"} 1\n"), "{text}");
        assert!(text.contains("stylestream_dead_lettered_total{reason=\"timed-out\"} 1\n"), "{text}");
        assert!(text.contains("stylestream_gpu_busy_seconds_total 0.25\n"), "{text}");
        assert!(text.contains("\nstylestream_frames_total 0\n"), "a counter went down: {text}");
    }

    /// Every `stylestream_*` name in `text`, with a histogram's `_bucket`/`_sum`/`_count` cut off.
    fn metric_names(text: &str, histograms: &[String]) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("stylestream_") {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| histograms.iter().any(|h| h == base));
            names.push(histogram.unwrap_or(name).to_string());
            rest = &tail[end..];
        }
        names
    }

    /// Every metric, each with a value recorded (labelled families appear only then).
    fn all_recorded() -> Metrics {
        let m = Metrics::new().unwrap();
        m.jobs_total.inc(OutcomeKind::Succeeded);
        m.dead_lettered_total.inc(PoisonCode::Cancelled);
        m.stage_seconds.observe(Stage::Wait, 0.1);
        m.retries_total.inc(Cause::Store);
        m.set_trouble(Cause::Store, None);
        m
    }

    #[test]
    fn the_grafana_dashboard_only_queries_metrics_we_register() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/grafana-dashboard.json");
        let text = std::fs::read_to_string(&path).expect("config/grafana-dashboard.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        let declared = all_recorded().declared();
        assert_eq!(declared.len(), 16, "{declared:?}");
        let histograms: Vec<String> =
            declared.iter().filter(|(_, k)| k == "histogram").map(|(n, _)| n.clone()).collect();
        let mut used = Vec::new();
        for p in panels {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            for t in targets {
                let expr = t["expr"].as_str().expect("expr");
                let names = metric_names(expr, &histograms);
                assert!(!names.is_empty(), "{expr}");
                used.extend(names);
            }
        }
        for v in dashboard["templating"]["list"].as_array().expect("templating") {
            used.extend(metric_names(v["definition"].as_str().unwrap_or(""), &histograms));
        }
        let unknown: Vec<&String> = used.iter().filter(|n| !declared.iter().any(|(d, _)| d == *n)).collect();
        assert!(unknown.is_empty(), "the dashboard queries metrics that Metrics does not register: {unknown:?}");
        for name in [
            "stylestream_queue_lag_seconds",
            "stylestream_jobs_in_flight",
            "stylestream_gpu_device_opens_total",
            "stylestream_stage_seconds",
        ] {
            assert!(used.iter().any(|u| u == name), "the dashboard shows no {name}");
        }
    }

    #[test]
    fn troubles_show_in_readiness_and_the_trouble_gauge() {
        let m = Metrics::new().unwrap();
        assert_eq!(m.readiness(), Err("broker: not consuming".to_string()));
        m.set_ready(true);
        assert_eq!(m.readiness(), Ok(()));
        m.set_trouble(Cause::Disk, Some("full".into()));
        m.set_trouble(Cause::Credentials, Some("refused".into()));
        assert_eq!(m.readiness(), Err("credentials: refused\ndisk: full".to_string()));
        assert!(m.render().contains("stylestream_trouble{cause=\"disk\"} 1\n"));
        m.set_trouble(Cause::Disk, None);
        assert_eq!(m.readiness(), Err("credentials: refused".to_string()));
        assert!(m.render().contains("stylestream_trouble{cause=\"disk\"} 0\n"));
    }
}
