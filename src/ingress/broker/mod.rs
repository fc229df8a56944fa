//! RabbitMQ through lapin: the topology, consuming with manual acks and a prefetch bound,
//! dead-lettering with a reason, retrying later through the broker, and publishing with
//! publisher confirms.
//!
//! ```text
//!  publishers ──> <queue> (quorum, x-delivery-limit) ──deliveries──> consumer
//!                   ^  │ limit spent (a message that kills its consumer every time)
//!                   │  └──────────────────────────────┐
//!    TTL expired    │                                 v
//!  <queue>.retry.<N>s (classic, x-message-ttl = N s)  <dead_letter> exchange ──> <dead_letter> queue
//!                   ^                                 ^
//!  transient failure: republished with attempt count  poison, or retry budget spent: published
//!  and first-failure time, then the delivery acked    with x-stylestream-reason, then acked
//! ```
//! A retry never sleeps in the consumer: the delay lives in the broker (one queue per delay, so
//! a long delay never holds back a short one).

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("RabbitMQ {what}: {reason}")]
    Op { what: String, reason: String },
    #[error("RabbitMQ did not confirm the message to {queue}")]
    NotConfirmed { queue: String },
}

fn op(what: impl Into<String>) -> impl FnOnce(lapin::Error) -> BrokerError {
    let what = what.into();
    move |e| BrokerError::Op { what, reason: e.to_string() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Environment variable holding the AMQP URL (`amqp://` or `amqps://`, with credentials).
    #[serde(default = "default_url_env")]
    pub url_env: String,
    /// The URL when the variable is unset; must not hold a password.
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Dead-letter exchange and queue (the reason is in the `x-stylestream-reason` header).
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
    /// Unacknowledged deliveries this instance holds at once.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it (quorum queue delivery
    /// limit: also bounds messages that crash the service every time).
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Larger messages are dead-lettered unread.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Delays before the 1st, 2nd, ... retry of a job that failed for a passing reason (store
    /// or disk trouble); the last one repeats. Each delay is a queue `<queue>.retry.<ms>ms`.
    #[serde(default = "default_retry_delays_secs")]
    pub retry_delays_secs: Vec<f64>,
    /// How long a job keeps being retried after its first passing failure before it is
    /// dead-lettered (`retry-budget-spent`). Credential failures do not spend it.
    #[serde(default = "default_retry_budget_secs")]
    pub retry_budget_secs: f64,
}

fn default_url_env() -> String {
    "STYLESTREAM_AMQP_URL".into()
}
fn default_url() -> String {
    "amqp://127.0.0.1:5672/%2f".into()
}
fn default_queue() -> String {
    "stylestream.jobs".into()
}
fn default_dead_letter() -> String {
    "stylestream.dead".into()
}
fn default_prefetch() -> u16 {
    2
}
fn default_max_deliveries() -> u32 {
    5
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
fn default_retry_delays_secs() -> Vec<f64> {
    vec![2.0, 10.0, 30.0, 60.0, 300.0]
}
fn default_retry_budget_secs() -> f64 {
    3600.0
}

/// Headers a retried message carries.
pub const ATTEMPTS_HEADER: &str = "x-stylestream-attempts";
pub const FIRST_FAILURE_HEADER: &str = "x-stylestream-first-failure-unix-ms";

/// Where a delivery stands in its retries: how often it failed for a passing reason, and when
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryState {
    pub attempts: u32,
    pub first_failure_unix_ms: Option<i64>,
}

impl RetryState {
    pub fn of(d: &Delivery) -> Self {
        let headers = d.0.properties.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default();
        let int = |name: &str| {
            headers.get(name).and_then(|v| match v {
                AMQPValue::LongLongInt(n) => Some(*n),
                AMQPValue::LongInt(n) => Some(*n as i64),
                AMQPValue::LongUInt(n) => Some(*n as i64),
                _ => None,
            })
        };
        RetryState {
            attempts: int(ATTEMPTS_HEADER).map_or(0, |n| n.clamp(0, u32::MAX as i64) as u32),
            first_failure_unix_ms: int(FIRST_FAILURE_HEADER),
        }
    }

    /// Seconds since the first passing failure (0 for a first failure).
    pub fn failing_for_secs(&self, now_unix_ms: i64) -> f64 {
        self.first_failure_unix_ms.map_or(0.0, |t| (now_unix_ms - t).max(0) as f64 / 1e3)
    }
}
/// The user-info part of an AMQP URL (between `://` and the last `@` before the host), if any.
/// The last `@` counts: a password may hold `@`, `:` and `/` unencoded.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, host) = rest.rsplit_once('@')?;
    Some((scheme, auth, host))
}

/// Whether an AMQP URL has a password (`user:pass@`).
pub fn has_password(url: &str) -> bool {
    split_userinfo(url).is_some_and(|(_, auth, _)| auth.contains(':'))
}

/// The URL with its password replaced by `***`, for logs and errors. A string that is not a
/// URL is not echoed at all.
pub fn redact(url: &str) -> String {
    if !url.contains("://") {
        return "<not an amqp:// URL>".into();
    }
    match split_userinfo(url) {
        Some((scheme, auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `text` with every trace of the URL's password removed (raw and percent-decoded), for error
/// messages of libraries that echo what they were given.
pub fn scrub(text: &str, url: &str) -> String {
    let Some((_, auth, _)) = split_userinfo(url) else { return text.to_string() };
    let Some((_, password)) = auth.split_once(':') else { return text.to_string() };
    let mut out = text.replace(auth, "***");
    if !password.is_empty() {
        out = out.replace(password, "***");
        let decoded = percent_decode(password);
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The header that carries the dead-letter reason.
pub const REASON_HEADER: &str = "x-stylestream-reason";

pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
    pub config: BrokerConfig,
}

impl Broker {
    /// Connects (the URL is logged without its password) and declares the topology.
    pub async fn connect(url: &str, config: &BrokerConfig) -> Result<Self, BrokerError> {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(BrokerError::Connect {
                url: redact(url),
                reason: "the URL must start with amqp:// or amqps://".into(),
            });
        }
        let connection =
            Connection::connect(url, ConnectionProperties::default().with_connection_name("stylestream".into()))
                .await
                .map_err(|e| BrokerError::Connect { url: redact(url), reason: scrub(&e.to_string(), url) })?;
        let channel = connection.create_channel().await.map_err(op("opening a channel"))?;
        let broker = Self { connection, channel, config: config.clone() };
        broker.declare().await?;
        tracing::info!(url = %redact(url), queue = %config.queue, "connected to RabbitMQ");
        Ok(broker)
    }

    async fn declare(&self) -> Result<(), BrokerError> {
        let c = &self.config;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        self.channel
            .exchange_declare(c.dead_letter.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(op(format!("declaring exchange {}", c.dead_letter)))?;
        let queue = QueueDeclareOptions { durable: true, ..Default::default() };
        self.channel
            .queue_declare(c.dead_letter.as_str().into(), queue, FieldTable::default())
            .await
            .map_err(op(format!("declaring queue {}", c.dead_letter)))?;
        self.channel
            .queue_bind(
                c.dead_letter.as_str().into(),
                c.dead_letter.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(op(format!("binding queue {}", c.dead_letter)))?;
        self.channel.queue_declare(c.queue.as_str().into(), queue, job_queue_arguments(c)).await.map_err(op(
            format!("declaring queue {} (an existing queue of that name with other arguments is refused)", c.queue),
        ))?;
        let control = control_exchange(c);
        self.channel
            .exchange_declare(control.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(op(format!("declaring exchange {control}")))?;
        for ms in retry_delays_ms(c) {
            let name = retry_queue(c, ms);
            self.channel
                .queue_declare(name.as_str().into(), queue, retry_queue_arguments(c, ms))
                .await
                .map_err(op(format!("declaring queue {name}")))?;
        }
        Ok(())
    }

    /// Sends `d` back through the retry queue of its retry number `attempts` (the delay), with
    /// the attempt count and the time of the first failure (when given) in its headers, and
    /// waits for the broker's confirm; the caller then acks the delivery. Returns the delay.
    pub async fn retry_later(
        &self,
        d: &Delivery,
        attempts: u32,
        first_failure_unix_ms: Option<i64>,
        reason: &str,
    ) -> Result<std::time::Duration, BrokerError> {
        let delays = retry_delays_ms(&self.config);
        let ms = delays.get(attempts as usize).or(delays.last()).copied().unwrap_or(1000);
        let mut headers = FieldTable::default();
        let d = &d.0;
        for (k, v) in d.properties.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default() {
            // The broker's own bookkeeping starts afresh with the new message.
            if !matches!(
                k.as_str(),
                "x-death"
                    | "x-delivery-count"
                    | "x-first-death-exchange"
                    | "x-first-death-queue"
                    | "x-first-death-reason"
            ) {
                headers.insert(k, v);
            }
        }
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(attempts as i64 + 1));
        if let Some(t) = first_failure_unix_ms {
            headers.insert(FIRST_FAILURE_HEADER.into(), AMQPValue::LongLongInt(t));
        }
        headers
            .insert("x-stylestream-last-error".into(), AMQPValue::LongString(LongString::from(truncate(reason, 2000))));
        let mut props = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
        if let Some(id) = d.properties.message_id() {
            props = props.with_message_id(id.clone());
        }
        if let Some(t) = d.properties.content_type() {
            props = props.with_content_type(t.clone());
        }
        publish_confirmed(&self.channel, "", &retry_queue(&self.config, ms), &d.data, props).await?;
        Ok(std::time::Duration::from_millis(ms))
    }

    /// Starts consuming with at most `prefetch` unacknowledged deliveries.
    pub async fn consume(&self, tag: &str) -> Result<Deliveries, BrokerError> {
        self.channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(op("setting the prefetch"))?;
        self.channel
            .basic_consume(
                self.config.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(Deliveries)
            .map_err(op(format!("consuming from {}", self.config.queue)))
    }

    /// Consumes the control messages (`stylestream.control/1`: cancel a job): every instance
    /// gets each one, through its own exclusive queue bound to the `<queue>.control` fanout
    /// exchange. No acks: a control message concerns the instances running now.
    pub async fn control(&self, tag: &str) -> Result<Deliveries, BrokerError> {
        let exchange = control_exchange(&self.config);
        let own = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let q = self
            .channel
            .queue_declare("".into(), own, FieldTable::default())
            .await
            .map_err(op("declaring the control queue"))?;
        self.channel
            .queue_bind(
                q.name().as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(op(format!("binding the control queue to {exchange}")))?;
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        self.channel
            .basic_consume(q.name().as_str().into(), tag.into(), no_ack, FieldTable::default())
            .await
            .map(Deliveries)
            .map_err(op("consuming control messages"))
    }

    /// Publishes a job message (a segment, a stitch) to the job queue, persistent, and waits for
    /// the broker's confirm.
    pub async fn publish_job(&self, body: &[u8]) -> Result<(), BrokerError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_timestamp(now)
            .with_content_type(ShortString::from("application/json"));
        publish_confirmed(&self.channel, "", &self.config.queue, body, props).await
    }

    /// Publishes a control message to every instance.
    pub async fn publish_control(&self, body: &[u8]) -> Result<(), BrokerError> {
        let props = BasicProperties::default().with_content_type(ShortString::from("application/json"));
        let exchange = control_exchange(&self.config);
        self.channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(op("enabling publisher confirms"))?;
        let confirm = self
            .channel
            .basic_publish(exchange.as_str().into(), "".into(), BasicPublishOptions::default(), body, props)
            .await
            .map_err(op("publishing a control message"))?
            .await
            .map_err(op("waiting for the publisher confirm"))?;
        if !confirm.is_ack() {
            return Err(BrokerError::NotConfirmed { queue: exchange });
        }
        Ok(())
    }

    pub async fn cancel(&self, tag: &str) -> Result<(), BrokerError> {
        self.channel
            .basic_cancel(tag.into(), BasicCancelOptions::default())
            .await
            .map_err(op("cancelling the consumer"))
    }

    /// Messages ready in the job queue (a passive declare).
    pub async fn depth(&self) -> Result<u32, BrokerError> {
        let passive = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
        let q = self
            .channel
            .queue_declare(self.config.queue.as_str().into(), passive, job_queue_arguments(&self.config))
            .await
            .map_err(op("reading the queue depth"))?;
        Ok(q.message_count())
    }

    /// Publishes `body` to the dead-letter exchange with the reason in a header, waits for the
    /// broker's confirm; the caller then acks the original.
    pub async fn dead_letter(&self, body: &[u8], reason_code: &str, reason: &str) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(LongString::from(reason_code)));
        headers.insert("x-stylestream-error".into(), AMQPValue::LongString(LongString::from(truncate(reason, 2000))));
        let props = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
        publish_confirmed(&self.channel, &self.config.dead_letter, "", body, props).await
    }

    pub async fn close(&self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// The fanout exchange of control messages.
fn control_exchange(c: &BrokerConfig) -> String {
    format!("{}.control", c.queue)
}

/// A delivery: the message, and the token that settles it (it travels with the job and comes
/// back with its outcome).
pub struct Delivery(lapin::message::Delivery);

impl Delivery {
    pub fn data(&self) -> &[u8] {
        &self.0.data
    }

    /// The publisher's message id, if it gave one.
    pub fn message_id(&self) -> Option<String> {
        self.0.properties.message_id().as_ref().map(|id| id.to_string())
    }

    /// When it was published (the AMQP timestamp, seconds), if the publisher said.
    pub fn published_unix_secs(&self) -> Option<u64> {
        *self.0.properties.timestamp()
    }

    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.0.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(op("acknowledging"))
    }

    /// Back to the queue at once (shutdown: another instance takes it).
    pub async fn nack_requeue(&self) -> Result<(), BrokerError> {
        self.0
            .acker
            .nack(BasicNackOptions { requeue: true, ..Default::default() })
            .await
            .map(|_| ())
            .map_err(op("handing back"))
    }
}

/// The deliveries of one consumer.
pub struct Deliveries(Consumer);

impl Deliveries {
    /// The next delivery; `None` when the consumer was cancelled.
    pub async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        use futures_util::StreamExt;
        self.0
            .next()
            .await
            .map(|r| r.map(Delivery).map_err(|e| BrokerError::Op { what: "consuming".into(), reason: e.to_string() }))
    }
}

/// The job queue: a quorum queue, dead-lettering to our exchange after `max_deliveries`.
fn job_queue_arguments(c: &BrokerConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(c.max_deliveries as i32));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(c.dead_letter.as_str())));
    args
}

/// The retry delays in whole milliseconds (at least 1 ms each, at least one).
fn retry_delays_ms(c: &BrokerConfig) -> Vec<u64> {
    let v: Vec<u64> = c.retry_delays_secs.iter().map(|s| (s.max(0.001) * 1000.0).round() as u64).collect();
    if v.is_empty() {
        vec![1000]
    } else {
        v
    }
}

fn retry_queue(c: &BrokerConfig, ms: u64) -> String {
    format!("{}.retry.{ms}ms", c.queue)
}

/// A retry queue: nobody consumes it; each message expires after `ms` and the broker
/// dead-letters it back into the job queue through the default exchange.
fn retry_queue_arguments(c: &BrokerConfig, ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms as i64));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("")));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(LongString::from(c.queue.as_str())));
    args
}

/// Names of the retry queues (for tests and clean-up).
pub fn retry_queues(c: &BrokerConfig) -> Vec<String> {
    retry_delays_ms(c).into_iter().map(|ms| retry_queue(c, ms)).collect()
}

/// Publishes one persistent message with publisher confirms (used by `submit`).
pub async fn submit(url: &str, config: &BrokerConfig, body: &[u8]) -> Result<(), BrokerError> {
    let broker = Broker::connect(url, config).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(now)
        .with_content_type(ShortString::from("application/json"));
    let result = publish_confirmed(&broker.channel, "", &config.queue, body, props).await;
    broker.close().await;
    result
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), BrokerError> {
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(op("enabling publisher confirms"))?;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            props,
        )
        .await
        .map_err(op("publishing"))?
        .await
        .map_err(op("waiting for the publisher confirm"))?;
    let queue = if exchange.is_empty() { routing_key } else { exchange };
    if !confirm.is_ack() || confirm.take_message().is_some() {
        return Err(BrokerError::NotConfirmed { queue: queue.to_string() });
    }
    Ok(())
}

/// Publishes one control message (`stylestream cancel`) to every running instance.
pub async fn send_control(url: &str, config: &BrokerConfig, body: &[u8]) -> Result<(), BrokerError> {
    let broker = Broker::connect(url, config).await?;
    let result = broker.publish_control(body).await;
    broker.close().await;
    result
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
