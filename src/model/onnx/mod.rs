//! ONNX import: reads a `.onnx` file (a bounds-checked protobuf decoder, no generated code) and
//! maps its graph onto the same network description and weights the safetensors path uses, so
//! both run on the same GPU kernels.
//!
//! ```no_run
//! let (desc, weights) = stylestream::model::onnx::load(std::path::Path::new("mosaic-9.onnx")).unwrap();
//! println!("{} layers, {} MACs per pixel", desc.layers.len(), desc.macs_per_pixel());
//! ```

pub mod fold;
pub mod graph;
pub mod proto;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use graph::{Imported, OPSETS, PROBE_SIZE, SUPPORTED_OPS};

use super::{ModelError, NetworkDescription, Weights};

/// Why an ONNX file cannot be imported; each names the offset, tensor or node concerned.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("malformed protobuf at byte {offset}: {reason}")]
    Protobuf { offset: usize, reason: String },
    #[error("the file holds no graph (is it an ONNX model?)")]
    NoGraph,
    #[error("{0}")]
    Opset(String),
    #[error("unsupported operators: {list} (supported: {})", SUPPORTED_OPS.join(", "))]
    Unsupported { list: String },
    #[error("tensor `{name}`: {source}")]
    Tensor { name: String, source: Box<fold::FoldError> },
    #[error("{0}")]
    Graph(String),
    #[error("node `{node}` ({op}): {reason}")]
    Node { node: String, op: String, reason: String },
    /// A constant of the node that cannot be folded (shape arithmetic, Slice arguments, pads).
    #[error("node `{node}` ({op}): {source}")]
    Fold { node: String, op: String, source: Box<fold::FoldError> },
}

/// Imports ONNX bytes into a description and tensors.
pub fn import_bytes(bytes: &[u8]) -> Result<Imported, OnnxError> {
    let model = proto::parse_model(bytes)?;
    graph::import(&model)
}

/// Reads a `.onnx` file: its description and checked weights (sha256 of the file's bytes).
pub fn load(path: &Path) -> Result<(NetworkDescription, Weights), ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Read { path: path.to_path_buf(), source: e })?;
    let (desc, weights, _) = from_bytes(&bytes, path)?;
    Ok((desc, weights))
}

/// Imports ONNX bytes; `origin` names them in errors and in the weights.
pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<(NetworkDescription, Weights, Imported), ModelError> {
    let imported = import_bytes(bytes).map_err(|source| ModelError::Onnx { path: origin.to_path_buf(), source })?;
    let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let weights = Weights::from_memory(imported.tensors.clone(), &imported.description, origin, sha256)?;
    Ok((imported.description.clone(), weights, imported))
}

/// Whether a path names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}
