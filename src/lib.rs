//! stylestream: style-transfer networks as hand-written WGSL compute shaders on wgpu, applied
//! to images and video frames.

pub mod frame;
pub mod model;
pub mod media;
pub mod reorder;
pub mod telemetry;
pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod dataflow;
pub mod ingress;
pub mod job;
pub mod service;
pub mod stop;
pub mod storage;
pub mod zoo;
