//! Ingress: RabbitMQ (topology, consuming, dead-lettering, publishing with confirms) and the
//! trigger events it carries (our job schema, Azure Event Grid, S3 notifications, trigger
//! objects), turned into job requests. Imports no other I/O module.

pub mod broker;
pub mod event;
