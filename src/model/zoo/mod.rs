//! Style models on disk and in the public zoo: the pinned table of the ONNX model zoo's
//! fast-neural-style networks, the local models directory (`models list`), downloads with a
//! pinned sha256 (`models fetch`), and conversion to the plain format (`models convert`).

pub mod convert;
pub mod fetch;

use std::path::{Path, PathBuf};

use crate::model::description::Op;
use crate::model::{onnx, ModelError, NetworkDescription, Weights};

/// Errors of the zoo commands, each naming the file, URL or model concerned.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no models directory: pass --dir DIR or set STYLESTREAM_MODELS_DIR")]
    NoDir,
    #[error("cannot read the models directory {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error("`{name}` is not in the zoo table ({known}); use --url URL --sha256 HEX for any other file")]
    UnknownModel { name: String, known: String },
    #[error("`{name}` has no pinned sha256 yet; pass --sha256 HEX (see README.md, 'Bring your own model')")]
    NoPin { name: String },
    #[error("--sha256 must be 64 hexadecimal digits, got `{0}`")]
    BadSha(String),
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url}: sha256 mismatch: expected {expected}, got {got} ({bytes} bytes); nothing was written")]
    Checksum { url: String, expected: String, got: String, bytes: u64 },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {reason}")]
    Serialize { path: PathBuf, reason: String },
}

/// One model of the ONNX model zoo (`validated/vision/style_transfer/fast_neural_style`):
/// PyTorch TransformerNet, opset 9, input `input1` [1, 3, 224, 224] in 0..255.
#[derive(Debug, Clone, Copy)]
pub struct ZooModel {
    pub name: &'static str,
    pub url: &'static str,
    /// sha256 of the file: the Git LFS object id in github.com/onnx/models, which is the
    /// sha256 of the file's bytes. `None`: not pinned yet (fetch then needs --sha256).
    pub sha256: Option<&'static str>,
    pub bytes: u64,
}

const ZOO_BASE: &str =
    "https://github.com/onnx/models/raw/main/validated/vision/style_transfer/fast_neural_style/model/";

macro_rules! zoo {
    ($name:literal, $sha:expr) => {
        ZooModel {
            name: $name,
            url: concat!(
                "https://github.com/onnx/models/raw/main/validated/vision/style_transfer/fast_neural_style/model/",
                $name,
                "-9.onnx"
            ),
            sha256: $sha,
            bytes: 6_728_029,
        }
    };
}

/// The five zoo models. Pins: the LFS pointers of `udnie-9`, `pointilism-9` and
/// `rain-princess-9` in onnx/models, and OpenVINO open_model_zoo's `model.yml` for `mosaic-9`
/// (same size, 6,728,029 B). `candy-9` has no pin we could verify offline.
pub const ZOO: [ZooModel; 5] = [
    zoo!("mosaic", Some("fa646dedade881243f8d5a2ceb7de2b93675b21fc24f7482894ac4851a9a0a47")),
    zoo!("candy", None),
    zoo!("rain-princess", Some("4162912e6f75fedef6f810ae989b9e10d3d5d43308dab34b027c850cf255e152")),
    zoo!("udnie", Some("8656b6ce7dec8f22ee13c2d557d6b67bd6f550dde88d0f2e7c9972aeb765cc0d")),
    zoo!("pointilism", Some("5ee2b8d4d6bc60a777f54e0fe96a1b717360a004b79d56c67390d4a975b14d98")),
];

/// Base URL of the zoo table (for messages).
pub fn zoo_base() -> &'static str {
    ZOO_BASE
}

pub fn zoo_model(name: &str) -> Option<&'static ZooModel> {
    let name = name.strip_suffix("-9").unwrap_or(name);
    ZOO.iter().find(|m| m.name == name)
}

/// `--dir`, else `$STYLESTREAM_MODELS_DIR`.
pub fn models_dir(dir: Option<&Path>) -> Result<PathBuf, ZooError> {
    dir.map(Path::to_path_buf).or_else(crate::model::load::env_dir).ok_or(ZooError::NoDir)
}

/// A model file found in the models directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub name: String,
    pub path: PathBuf,
    /// `onnx` or `safetensors`.
    pub format: String,
    /// The description that loads it (`transformnet-tf`, `transformnet-torch`, a sidecar
    /// `.toml`, or the imported graph's name).
    pub network: Option<String>,
    /// One line: layers, up-sampling kind, padding, norm, output transform.
    pub summary: Option<String>,
    pub parameters: Option<u64>,
    pub flops_per_pixel: Option<f64>,
    /// Why the file could not be read, when it could not.
    pub error: Option<String>,
}

/// Learned parameters a description names (weights, biases, norm scale and shift).
pub fn parameter_count(desc: &NetworkDescription) -> u64 {
    desc.layers
        .iter()
        .map(|l| {
            let oc = l.out_channels as u64;
            l.weight_shape().iter().product::<usize>() as u64
                + if l.bias.is_some() { oc } else { 0 }
                + if l.norm.is_some() { 2 * oc } else { 0 }
        })
        .sum()
}

/// A one-line architecture summary.
pub fn summary(desc: &NetworkDescription) -> String {
    let convs = desc.layers.iter().filter(|l| l.op == Op::Conv).count();
    let deconvs = desc.layers.len() - convs;
    let residuals = desc.layers.iter().filter(|l| l.residual.is_some()).count();
    let reflect = desc.layers.iter().any(|l| l.padding == crate::model::description::Padding::Reflect);
    let up = if deconvs > 0 {
        format!("{deconvs} conv-transpose")
    } else {
        format!("{} upsample+conv", desc.layers.iter().filter(|l| l.upsample > 1).count())
    };
    let output = match desc.output {
        crate::model::description::OutputTransform::Tanh { scale, offset } => format!("tanh*{scale}+{offset}"),
        crate::model::description::OutputTransform::Sigmoid { scale, offset } => format!("sigmoid*{scale}+{offset}"),
        crate::model::description::OutputTransform::Linear { scale, offset } => format!("x*{scale}+{offset}"),
        crate::model::description::OutputTransform::Clamp => "clamp".into(),
    };
    let width = desc.layers.iter().map(|l| l.out_channels).max().unwrap_or(0);
    format!(
        "{} layers ({convs} conv, {up}, {residuals} residual), width {width}, {} padding, output {output}",
        desc.layers.len(),
        if reflect { "reflect" } else { "same" }
    )
}

/// Loads a model file the way `stylize --model FILE` would, choosing the description for a
/// safetensors file: a sidecar `<stem>.toml`, else the first built-in one that fits.
pub fn load_any(path: &Path) -> Result<(NetworkDescription, Weights, String), ModelError> {
    if onnx::is_onnx(path) {
        let (desc, weights) = onnx::load(path)?;
        let name = desc.name.clone();
        return Ok((desc, weights, name));
    }
    let sidecar = path.with_extension("toml");
    if sidecar.is_file() {
        let desc = NetworkDescription::from_file(&sidecar)?;
        let weights = Weights::load(path, &desc)?;
        return Ok((desc, weights, sidecar.display().to_string()));
    }
    let mut first_err = None;
    for name in ["transformnet-tf", "transformnet-torch"] {
        let desc = NetworkDescription::load(name)?;
        match Weights::load(path, &desc) {
            Ok(w) => return Ok((desc, w, name.to_string())),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err
        .unwrap_or(ModelError::Description { origin: path.display().to_string(), reason: "no description".into() }))
}

/// Every `.onnx` and `.safetensors` file in `dir`, by name, with what could be read of it.
pub fn list(dir: &Path) -> Result<Vec<Listed>, ZooError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ZooError::ReadDir { path: dir.to_path_buf(), source: e })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let format = match path.extension().and_then(|x| x.to_str()) {
            Some(x) if x.eq_ignore_ascii_case("onnx") => "onnx",
            Some(x) if x.eq_ignore_ascii_case("safetensors") => "safetensors",
            _ => continue,
        };
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut item = Listed {
            name,
            path: path.clone(),
            format: format.into(),
            network: None,
            summary: None,
            parameters: None,
            flops_per_pixel: None,
            error: None,
        };
        match load_any(&path) {
            Ok((desc, _, network)) => {
                item.network = Some(network);
                item.summary = Some(summary(&desc));
                item.parameters = Some(parameter_count(&desc));
                item.flops_per_pixel = Some(2.0 * desc.macs_per_pixel());
            }
            Err(err) => item.error = Some(err.to_string()),
        }
        out.push(item);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.format.cmp(&b.format)));
    Ok(out)
}

/// The listing as a table.
pub fn print_list(dir: &Path, items: &[Listed], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "models in {}:", dir.display())?;
    if items.is_empty() {
        writeln!(out, "  (none: `stylestream models fetch NAME` downloads one of {})", ZOO.map(|m| m.name).join(", "))?;
    }
    for m in items {
        match (&m.error, m.parameters, m.flops_per_pixel) {
            (None, Some(p), Some(f)) => writeln!(
                out,
                "  {:<16} {:<11} {:<22} {:>9} params {:>9.0} FLOP/px  {}",
                m.name,
                m.format,
                m.network.as_deref().unwrap_or("?"),
                p,
                f,
                m.summary.as_deref().unwrap_or("")
            )?,
            (err, _, _) => {
                writeln!(out, "  {:<16} {:<11} unusable: {}", m.name, m.format, err.as_deref().unwrap_or("?"))?
            }
        }
    }
    Ok(())
}
