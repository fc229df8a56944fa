//! Loading a network's weights from safetensors, checked tensor by tensor against its description.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::description::NetworkDescription;
use super::ModelError;

/// All tensors a description names, as f32 in their file layout.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Where the weights came from (for messages).
    pub origin: PathBuf,
    /// sha256 of the file, hex: identifies the model in logs and manifests.
    pub sha256: String,
    tensors: HashMap<String, Vec<f32>>,
}

impl Weights {
    /// Reads a safetensors file and checks every tensor the description names.
    pub fn load(path: &Path, desc: &NetworkDescription) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Read { path: path.to_path_buf(), source: e })?;
        Self::from_bytes(&bytes, path, desc)
    }

    /// Parses safetensors bytes; `origin` names them in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path, desc: &NetworkDescription) -> Result<Self, ModelError> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| ModelError::Safetensors { path: origin.to_path_buf(), reason: e.to_string() })?;
        let mut tensors = HashMap::new();
        let mut take = |name: &str, shape: &[usize]| -> Result<(), ModelError> {
            if tensors.contains_key(name) {
                return Ok(());
            }
            let t = file.tensor(name).map_err(|_| ModelError::MissingTensor {
                path: origin.to_path_buf(),
                tensor: name.to_string(),
                expected: format!("{shape:?}"),
            })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(ModelError::TensorShape {
                    path: origin.to_path_buf(),
                    tensor: name.to_string(),
                    expected: format!("f32 {shape:?}"),
                    found: format!("{:?} {:?}", t.dtype(), t.shape()),
                });
            }
            let values: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(ModelError::TensorShape {
                    path: origin.to_path_buf(),
                    tensor: name.to_string(),
                    expected: "finite values".into(),
                    found: format!("{} at element {i}", values[i]),
                });
            }
            tensors.insert(name.to_string(), values);
            Ok(())
        };
        for l in &desc.layers {
            let oc = l.out_channels as usize;
            take(&l.weight, &l.weight_shape())?;
            if let Some(b) = &l.bias {
                take(b, &[oc])?;
            }
            if let Some(n) = &l.norm {
                take(&n.scale, &[oc])?;
                take(&n.shift, &[oc])?;
            }
        }
        let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { origin: origin.to_path_buf(), sha256, tensors })
    }

    /// Builds weights from named tensors (tests, random networks); checks them like a file.
    pub fn from_tensors(tensors: HashMap<String, Vec<f32>>, desc: &NetworkDescription) -> Result<Self, ModelError> {
        Self::from_memory(tensors, desc, Path::new("<memory>"), String::new())
    }

    /// Builds weights from named tensors read elsewhere (an ONNX import): checks that every
    /// tensor the description names is present, of the right size and finite. `sha256` is that
    /// of the file they came from.
    pub fn from_memory(
        tensors: HashMap<String, Vec<f32>>,
        desc: &NetworkDescription,
        origin: &Path,
        sha256: String,
    ) -> Result<Self, ModelError> {
        for l in &desc.layers {
            let mut expect = vec![(&l.weight, l.weight_shape().iter().product::<usize>())];
            if let Some(b) = &l.bias {
                expect.push((b, l.out_channels as usize));
            }
            if let Some(n) = &l.norm {
                expect.push((&n.scale, l.out_channels as usize));
                expect.push((&n.shift, l.out_channels as usize));
            }
            for (name, len) in expect {
                match tensors.get(name.as_str()) {
                    Some(v) if v.len() == len => {
                        if let Some(i) = v.iter().position(|v| !v.is_finite()) {
                            return Err(ModelError::TensorShape {
                                path: origin.to_path_buf(),
                                tensor: name.clone(),
                                expected: "finite values".into(),
                                found: format!("{} at element {i}", v[i]),
                            });
                        }
                    }
                    _ => {
                        return Err(ModelError::MissingTensor {
                            path: origin.to_path_buf(),
                            tensor: name.clone(),
                            expected: format!("{len} values"),
                        })
                    }
                }
            }
        }
        Ok(Self { origin: origin.to_path_buf(), sha256, tensors })
    }

    /// Every tensor, by name (for writing them out, e.g. `models convert`).
    pub fn tensors(&self) -> &HashMap<String, Vec<f32>> {
        &self.tensors
    }

    /// A tensor checked at load time. Panics only on a name the description did not list,
    /// which is a programming error.
    pub fn get(&self, name: &str) -> &[f32] {
        match self.tensors.get(name) {
            Some(v) => v,
            None => panic!("tensor `{name}` was not checked at load time"),
        }
    }
}
