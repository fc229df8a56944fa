//! RabbitMQ through lapin: the topology (a durable quorum job queue with a delivery limit and a
//! dead-letter exchange bound to a dead-letter queue), consuming with manual acks and a
//! prefetch bound, dead-lettering with a reason, and publishing with publisher confirms.

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
/// Whether an AMQP URL has a password (`user:pass@`).
pub fn has_password(url: &str) -> bool {
    url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).is_some_and(|(auth, _)| auth.contains(':'))
}

/// The URL with its password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
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
        let connection = Connection::connect(url, ConnectionProperties::default().with_connection_name("stylestream".into()))
            .await
            .map_err(|e| BrokerError::Connect { url: redact(url), reason: e.to_string() })?;
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
            .queue_bind(c.dead_letter.as_str().into(), c.dead_letter.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(op(format!("binding queue {}", c.dead_letter)))?;
        self.channel
            .queue_declare(c.queue.as_str().into(), queue, job_queue_arguments(c))
            .await
            .map_err(op(format!("declaring queue {} (an existing queue of that name with other arguments is refused)", c.queue)))?;
        Ok(())
    }

    /// Starts consuming with at most `prefetch` unacknowledged deliveries.
    pub async fn consume(&self, tag: &str) -> Result<Consumer, BrokerError> {
        self.channel.basic_qos(self.config.prefetch, BasicQosOptions::default()).await.map_err(op("setting the prefetch"))?;
        self.channel
            .basic_consume(self.config.queue.as_str().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(op(format!("consuming from {}", self.config.queue)))
    }

    pub async fn cancel(&self, tag: &str) -> Result<(), BrokerError> {
        self.channel.basic_cancel(tag.into(), BasicCancelOptions::default()).await.map_err(op("cancelling the consumer"))
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

/// The job queue: a quorum queue, dead-lettering to our exchange after `max_deliveries`.
fn job_queue_arguments(c: &BrokerConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(c.max_deliveries as i32));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(c.dead_letter.as_str())));
    args
}

/// Publishes one persistent message with publisher confirms (used by `submit`).
pub async fn submit(url: &str, config: &BrokerConfig, body: &[u8]) -> Result<(), BrokerError> {
    let broker = Broker::connect(url, config).await?;
    let props = BasicProperties::default().with_delivery_mode(2).with_content_type(ShortString::from("application/json"));
    let result = publish_confirmed(&broker.channel, "", &config.queue, body, props).await;
    broker.close().await;
    result
}

async fn publish_confirmed(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8], props: BasicProperties) -> Result<(), BrokerError> {
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(op("enabling publisher confirms"))?;
    let confirm = channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions { mandatory: true, ..Default::default() }, body, props)
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

pub async fn ack(d: &lapin::message::Delivery) -> Result<(), BrokerError> {
    d.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(op("acknowledging"))
}

pub async fn nack_requeue(d: &lapin::message::Delivery) -> Result<(), BrokerError> {
    d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.map(|_| ()).map_err(op("handing back"))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_refused_in_the_file() {
        assert_eq!(redact("amqp://u:s3cret@h:5672/%2f"), "amqp://u:***@h:5672/%2f");
        assert_eq!(redact("amqps://h/v"), "amqps://h/v");
        assert!(has_password("amqp://u:p@h"));
        assert!(!has_password("amqp://u@h"));
        assert!(!has_password("amqp://h:5672"));
    }
}
