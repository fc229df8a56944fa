//! The one model loader: a model named by path or by bare name (looked up in a models
//! directory), safetensors (with a network description) or ONNX (which carries its own).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ModelError, NetworkDescription, Weights};

/// A loaded model: its description and checked weights.
#[derive(Clone)]
pub struct Model {
    pub desc: Arc<NetworkDescription>,
    pub weights: Arc<Weights>,
    /// The file it came from.
    pub path: PathBuf,
}

impl Model {
    /// Its name: the file's stem (`udnie` for `.../udnie.safetensors`).
    pub fn name(&self) -> String {
        self.path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// A model argument is a path, or a bare name (`udnie`) looked up as `<dir>/<name>.safetensors`
/// then `<dir>/<name>.onnx`; a bare name with no such file that exists as a file is taken as a
/// path.
pub fn resolve(model: &str, dir: Option<&Path>) -> Result<PathBuf, ModelError> {
    let path = PathBuf::from(model);
    let bare = path.components().count() == 1 && path.extension().is_none();
    if !bare {
        return Ok(path);
    }
    for ext in ["safetensors", "onnx"] {
        if let Some(candidate) = dir.map(|d| d.join(format!("{model}.{ext}"))) {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if path.is_file() {
        return Ok(path);
    }
    Err(ModelError::NotFound {
        name: model.to_string(),
        searched: dir.map_or("$STYLESTREAM_MODELS_DIR (unset)".into(), |d| d.display().to_string()),
    })
}

/// The models directory of the command line: `$STYLESTREAM_MODELS_DIR`.
pub fn env_dir() -> Option<PathBuf> {
    std::env::var_os("STYLESTREAM_MODELS_DIR").map(PathBuf::from)
}

/// Loads the model at `path`: ONNX by content, else safetensors checked against `network`
/// (a built-in description name or a description file; `shared` reuses one already loaded).
pub fn load_path(path: &Path, network: &str, shared: Option<&Arc<NetworkDescription>>) -> Result<Model, ModelError> {
    if super::onnx::is_onnx(path) {
        let (desc, weights) = super::onnx::load(path)?;
        tracing::info!(model = %path.display(), sha256 = %weights.sha256, network = %desc.name, layers = desc.layers.len(), "ONNX model imported");
        return Ok(Model { desc: Arc::new(desc), weights: Arc::new(weights), path: path.to_path_buf() });
    }
    let desc = match shared {
        Some(d) => d.clone(),
        None => Arc::new(NetworkDescription::load(network)?),
    };
    let weights = Weights::load(path, &desc)?;
    tracing::info!(model = %path.display(), sha256 = %weights.sha256, network = %desc.name, "model loaded");
    Ok(Model { desc, weights: Arc::new(weights), path: path.to_path_buf() })
}

/// `resolve` then `load_path`.
pub fn load(
    model: &str,
    dir: Option<&Path>,
    network: &str,
    shared: Option<&Arc<NetworkDescription>>,
) -> Result<Model, ModelError> {
    load_path(&resolve(model, dir)?, network, shared)
}
