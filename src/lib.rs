//! stylestream: style-transfer networks as hand-written WGSL compute shaders on wgpu, applied
//! to images and video frames.

pub mod app;
pub mod cli;
pub mod config;
pub mod dataflow;
pub mod frame;
pub mod ingress;
pub mod job;
pub mod media;
pub mod model;
pub mod stop;
pub mod storage;
pub mod telemetry;
