//! `models convert`: an ONNX model to the plain format, a safetensors file of the imported
//! tensors plus the network description as TOML, both written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::ZooError;
use crate::model::{onnx, NetworkDescription, Weights};

/// Converts `input` (.onnx) to `output` (.safetensors) and `description` (.toml).
pub fn convert(input: &Path, output: &Path, description: &Path) -> Result<NetworkDescription, ZooError> {
    let (desc, weights) = onnx::load(input)?;
    write_safetensors(&desc, &weights, output)?;
    let text = toml::to_string_pretty(&desc)
        .map_err(|e| ZooError::Serialize { path: description.to_path_buf(), reason: e.to_string() })?;
    let header = format!(
        "# Imported from {} (sha256 {}) by `stylestream models convert`.\n# Weights: {}\n",
        input.display(),
        weights.sha256,
        output.display()
    );
    write_atomic(description, format!("{header}{text}").as_bytes())?;
    Ok(desc)
}

fn write_safetensors(desc: &NetworkDescription, weights: &Weights, output: &Path) -> Result<(), ZooError> {
    let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
    for l in &desc.layers {
        let oc = l.out_channels as usize;
        shapes.push((l.weight.clone(), l.weight_shape().to_vec()));
        if let Some(b) = &l.bias {
            shapes.push((b.clone(), vec![oc]));
        }
        if let Some(n) = &l.norm {
            shapes.push((n.scale.clone(), vec![oc]));
            shapes.push((n.shift.clone(), vec![oc]));
        }
    }
    shapes.dedup_by(|a, b| a.0 == b.0);
    let bytes: Vec<Vec<u8>> =
        shapes.iter().map(|(name, _)| weights.get(name).iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let bad = |reason: String| ZooError::Serialize { path: output.to_path_buf(), reason };
    let views = shapes
        .iter()
        .zip(&bytes)
        .map(|((name, shape), data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v)).map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([
        ("source_sha256".to_string(), weights.sha256.clone()),
        ("network".to_string(), desc.name.clone()),
    ]);
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
    write_atomic(output, &data)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ZooError> {
    crate::media::write_atomic(path, data).map_err(|source| ZooError::Write { path: path.to_path_buf(), source })
}
