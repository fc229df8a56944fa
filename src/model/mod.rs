//! The style network: its declarative description, its weights, the frame-size rule, a CPU
//! reference, and the GPU implementation (`gpu`, the only module that touches wgpu).

pub mod cpu;
pub mod description;
pub mod geometry;
pub mod gpu;
pub mod load;
pub mod onnx;
pub mod weights;
pub mod zoo;

use std::path::PathBuf;

pub use description::NetworkDescription;
pub use load::Model;
pub use weights::Weights;

/// Errors of loading or describing a model. Each names the file and the tensor or field.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("network description {origin} is invalid: {reason}")]
    Description { origin: String, reason: String },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor `{tensor}` is missing (expected f32 {expected})")]
    MissingTensor { path: PathBuf, tensor: String, expected: String },
    #[error("{path} is not a usable ONNX model: {source}")]
    Onnx { path: PathBuf, source: onnx::OnnxError },
    #[error("{path}: tensor `{tensor}` should be {expected}, found {found}")]
    TensorShape { path: PathBuf, tensor: String, expected: String, found: String },
    #[error(
        "model `{name}` not found: no such file, and no {name}.safetensors or {name}.onnx in {searched} \
(set STYLESTREAM_MODELS_DIR, `stylestream models fetch NAME`, or see README.md for where to get models)"
    )]
    NotFound { name: String, searched: String },
}
