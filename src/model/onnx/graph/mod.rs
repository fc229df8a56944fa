//! Maps an ONNX graph onto the same [`NetworkDescription`] layers and tensors the safetensors
//! path uses: constant folding of shape arithmetic, then pattern matching of the operators of
//! feed-forward style networks (conv / conv-transpose, pads, nearest upsampling, instance or
//! folded batch norm, ReLU, residual adds, output transform).
//!
//! Every activation carries its symbolic meaning (`Sym`): "the network input times s", "layer i
//! at stage j", "input of the next conv, upsampled and padded", or "the output transform so far".
//! An operator applied to a value that is not the newest state of the newest layer would need a
//! branch the description cannot express, and is refused with the node named.
//!
//! **The size rule.** Shape arithmetic (Shape, Gather, ..., Resize sizes, Slice ends) is
//! evaluated once, at the input size the graph declares (256 for each symbolic dimension). What
//! it must come to there (a Resize to exactly 2H x 2W, TF-'SAME' pads, a crop to 2H x 2W) is
//! what the layer means at every size: the imported network then runs at any frame size, like
//! the built-in descriptions (see `model::geometry`).
//!
//! Files: this one reads the graph (inputs, constants, the order of the nodes, the output
//! transform) and dispatches each node to its op family: `conv` (Conv, ConvTranspose and the
//! Slice that crops the latter), `pad_resize` (Pad, Upsample, Resize in front of a conv),
//! `norm` (InstanceNormalization, BatchNormalization, Relu: the rest of a layer), `arith`
//! (Add / Sub / Mul / Div, and the output transform with Tanh, Sigmoid, Clip). `order` sorts
//! the nodes.

use std::collections::{HashMap, HashSet};

use super::fold::{self, Const, Data};
use super::proto::{self, Node};
use super::OnnxError;
use crate::model::description::{Layer, NetworkDescription, OutputTransform};

mod arith;
mod conv;
mod norm;
mod order;
mod pad_resize;

/// Operators the importer understands; any other is refused before anything else is done.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "InstanceNormalization",
    "BatchNormalization",
    "Relu",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pad",
    "Upsample",
    "Resize",
    "Tanh",
    "Clip",
    "Sigmoid",
    "Shape",
    "Gather",
    "Cast",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Slice",
    "Floor",
    "Ceil",
    "Identity",
    "Dropout",
];

/// Input size used for symbolic dimensions when evaluating shape arithmetic.
pub const PROBE_SIZE: i64 = 256;

/// Opsets of the default domain the importer reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=23;

/// The result of importing a graph: a validated description and its tensors (named
/// `<layer>.weight`, `<layer>.bias`, `<layer>.norm.scale`, `<layer>.norm.shift`).
#[derive(Debug, Clone)]
pub struct Imported {
    pub description: NetworkDescription,
    pub tensors: HashMap<String, Vec<f32>>,
    pub opset: i64,
    pub producer: String,
    /// The graph's input (H, W) when both are fixed numbers.
    pub declared_size: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Src {
    /// The network input times `scale`.
    Input { scale: f32 },
    /// Layer `idx` as it was at `stage` (each change to a layer bumps its stage).
    Layer { idx: usize, stage: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PadMode {
    Zero,
    Reflect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    None,
    Tanh,
    Sigmoid,
}

/// Pads in front of a conv: mode and (top, left, bottom, right).
type PrePad = Option<(PadMode, [i64; 4])>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sym {
    Src(Src),
    /// The input of a conv to come: `src` upsampled, then padded (top, left, bottom, right).
    Pre {
        src: Src,
        upsample: u32,
        pad: PrePad,
    },
    /// `func(layer idx) * scale + offset`: the network's output transform so far.
    Out {
        idx: usize,
        stage: u32,
        func: Func,
        scale: f64,
        offset: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Act {
    /// NCHW at the probe size, exactly as ONNX computes it.
    shape: [i64; 4],
    sym: Sym,
}

#[derive(Debug, Clone)]
enum Val {
    C(Const),
    A(Act),
}

#[derive(Debug, Default)]
struct LayerState {
    stage: u32,
    closed: bool,
    /// ConvTranspose without end padding: ONNX's output is cropped to (2H, 2W) by a Slice.
    crop: Option<(i64, i64)>,
}

struct Builder {
    opset: i64,
    layers: Vec<Layer>,
    state: Vec<LayerState>,
    tensors: HashMap<String, Vec<f32>>,
    input_scale: Option<f32>,
    names: HashSet<String>,
}

/// The reason given for a node that reads a layer's output after another op changed it.
const EARLIER_STATE: &str =
    "its input is an earlier state of a layer that was used elsewhere (branching graphs are not supported)";

/// An error about one node.
fn bad(node: &Node<'_>, reason: impl Into<String>) -> OnnxError {
    OnnxError::Node { node: node_name(node), op: node.op_type.clone(), reason: reason.into() }
}

/// A constant of one node that cannot be folded.
fn unfoldable(node: &Node<'_>, source: fold::FoldError) -> OnnxError {
    OnnxError::Fold { node: node_name(node), op: node.op_type.clone(), source: Box::new(source) }
}

fn node_name(node: &Node<'_>) -> String {
    if node.name.is_empty() {
        format!("<unnamed, output {}>", node.outputs.first().map_or("?", String::as_str))
    } else {
        node.name.clone()
    }
}

/// Imports a parsed model.
pub fn import(model: &proto::Model<'_>) -> Result<Imported, OnnxError> {
    let graph = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    let opset = model
        .opset_import
        .iter()
        .find(|(d, _)| d.is_empty() || d == "ai.onnx")
        .map(|(_, v)| *v)
        .ok_or_else(|| OnnxError::Opset("the model imports no opset of the default ONNX domain".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(OnnxError::Opset(format!(
            "opset {opset} is not supported ({}..={})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let unsupported: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| !(n.domain.is_empty() || n.domain == "ai.onnx") || !SUPPORTED_OPS.contains(&n.op_type.as_str()))
        .map(|n| {
            let op = if n.domain.is_empty() { n.op_type.clone() } else { format!("{}:{}", n.domain, n.op_type) };
            format!("{op} (node `{}`)", node_name(n))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported { list: unsupported.join(", ") });
    }

    let mut values: HashMap<&str, Val> = HashMap::new();
    for t in &graph.initializers {
        let c = fold::decode(t).map_err(|e| OnnxError::Tensor { name: t.name.clone(), source: Box::new(e) })?;
        values.insert(t.name.as_str(), Val::C(c));
    }
    let inputs: Vec<&proto::ValueInfo> =
        graph.inputs.iter().filter(|i| !values.contains_key(i.name.as_str())).collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::Graph(format!(
            "the graph must have exactly one input that is not an initializer (an RGB image), it has {}",
            inputs.len()
        )));
    };
    if input.elem_type != proto::data_type::FLOAT {
        return Err(OnnxError::Graph(format!(
            "input `{}` has element type {}; float is required",
            input.name, input.elem_type
        )));
    }
    let dims = input.dims.clone().unwrap_or_else(|| vec![None; 4]);
    if dims.len() != 4 || !matches!(dims[0], None | Some(1)) || !matches!(dims[1], None | Some(3)) {
        return Err(OnnxError::Graph(format!(
            "input `{}` has shape {}; NCHW [1, 3, H, W] (RGB) is required",
            input.name,
            show_dims(&dims)
        )));
    }
    let fixed = |d: Option<i64>| d.filter(|&v| v > 0);
    let declared_size = fixed(dims[2]).zip(fixed(dims[3]));
    let probe = |d: Option<i64>| fixed(d).unwrap_or(PROBE_SIZE).min(1 << 14);
    values.insert(
        input.name.as_str(),
        Val::A(Act { shape: [1, 3, probe(dims[2]), probe(dims[3])], sym: Sym::Src(Src::Input { scale: 1.0 }) }),
    );
    let [output] = graph.outputs.as_slice() else {
        return Err(OnnxError::Graph(format!(
            "the graph must have exactly one output, it has {}",
            graph.outputs.len()
        )));
    };

    let order = order::topological_order(graph, &values)?;
    let mut b = Builder {
        opset,
        layers: Vec::new(),
        state: Vec::new(),
        tensors: HashMap::new(),
        input_scale: None,
        names: HashSet::new(),
    };
    for i in order {
        let node = &graph.nodes[i];
        let args: Vec<Option<&Val>> =
            node.inputs.iter().map(|n| if n.is_empty() { None } else { values.get(n.as_str()) }).collect();
        let result = b.node(node, &args)?;
        if let Some(out) = node.outputs.first() {
            values.insert(out.as_str(), result);
        }
    }

    let out = values
        .get(output.name.as_str())
        .ok_or_else(|| OnnxError::Graph(format!("output `{}` is not produced by any node", output.name)))?;
    let last = b.layers.len().checked_sub(1).ok_or_else(|| OnnxError::Graph("the graph has no convolution".into()))?;
    let Val::A(out) = out else {
        return Err(OnnxError::Graph(format!("output `{}` is a constant", output.name)));
    };
    let transform = match out.sym {
        Sym::Src(Src::Layer { idx, stage }) if idx == last && b.current(idx, stage) => OutputTransform::Clamp,
        Sym::Out { idx, stage, func, scale, offset } if idx == last && b.current(idx, stage) => {
            let (scale, offset) = (scale as f32, offset as f32);
            match func {
                Func::Tanh => OutputTransform::Tanh { scale, offset },
                Func::Sigmoid => OutputTransform::Sigmoid { scale, offset },
                Func::None if scale == 1.0 && offset == 0.0 => OutputTransform::Clamp,
                Func::None => OutputTransform::Linear { scale, offset },
            }
        }
        _ => {
            return Err(OnnxError::Graph(format!(
                "output `{}` is not the last layer's result (branching graphs are not supported)",
                output.name
            )))
        }
    };
    if b.state[last].crop.is_some() {
        return Err(OnnxError::Graph("the last ConvTranspose's output is never cropped to 2H x 2W".into()));
    }
    let name = if graph.name.is_empty() { "onnx".to_string() } else { format!("onnx:{}", graph.name) };
    let description = NetworkDescription {
        name,
        input_channels: 3,
        input_scale: b.input_scale.unwrap_or(1.0),
        output: transform,
        layers: b.layers,
    };
    description.validate("the imported ONNX graph").map_err(|e| OnnxError::Graph(e.to_string()))?;
    Ok(Imported { description, tensors: b.tensors, opset, producer: model.producer_name.clone(), declared_size })
}

fn show_dims(d: &[Option<i64>]) -> String {
    let parts: Vec<String> = d.iter().map(|v| v.map_or("?".into(), |v| v.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

fn constant<'v>(node: &Node<'_>, args: &[Option<&'v Val>], i: usize, what: &str) -> Result<&'v Const, OnnxError> {
    match args.get(i).copied().flatten() {
        Some(Val::C(c)) => Ok(c),
        Some(Val::A(_)) => Err(bad(node, format!("{what} must be a constant, it depends on the image"))),
        None => Err(bad(node, format!("{what} is missing"))),
    }
}

fn optional_constant<'v>(
    node: &Node<'_>,
    args: &[Option<&'v Val>],
    i: usize,
    what: &str,
) -> Result<Option<&'v Const>, OnnxError> {
    match args.get(i).copied().flatten() {
        Some(Val::C(c)) if c.is_empty() => Ok(None),
        Some(Val::C(c)) => Ok(Some(c)),
        Some(Val::A(_)) => Err(bad(node, format!("{what} must be a constant, it depends on the image"))),
        None => Ok(None),
    }
}

fn activation(node: &Node<'_>, args: &[Option<&Val>]) -> Result<Act, OnnxError> {
    match args.first().copied().flatten() {
        Some(Val::A(a)) => Ok(*a),
        _ => Err(bad(node, "its first input must be the image's activation")),
    }
}

impl Builder {
    fn current(&self, idx: usize, stage: u32) -> bool {
        self.state.get(idx).is_some_and(|s| s.stage == stage && !s.closed)
    }

    /// The layer an op may extend: the newest state of a layer no conv has read yet.
    fn open_layer(&self, node: &Node<'_>, a: &Act) -> Result<usize, OnnxError> {
        match a.sym {
            Sym::Src(Src::Layer { idx, stage }) if self.current(idx, stage) && self.state[idx].crop.is_none() => {
                Ok(idx)
            }
            Sym::Src(Src::Layer { idx, .. }) if self.state[idx].crop.is_some() => {
                Err(bad(node, "a ConvTranspose output must first be cropped to 2H x 2W"))
            }
            Sym::Src(Src::Layer { .. }) => Err(bad(node, EARLIER_STATE)),
            _ => Err(bad(node, "can only follow a convolution layer here")),
        }
    }

    fn bump(&mut self, idx: usize, shape: [i64; 4]) -> Val {
        self.state[idx].stage += 1;
        Val::A(Act { shape, sym: Sym::Src(Src::Layer { idx, stage: self.state[idx].stage }) })
    }

    fn node(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let op = node.op_type.as_str();
        // Constant folding: every input known (or absent), and either all constants or a Shape.
        let all_const = args.iter().all(|a| !matches!(a, Some(Val::A(_))));
        if op == "Constant" || (all_const && !args.is_empty()) {
            let consts: Vec<Option<&Const>> =
                args.iter().map(|a| a.and_then(|v| if let Val::C(c) = v { Some(c) } else { None })).collect();
            return fold::eval(node, &consts, self.opset).map(Val::C).map_err(|e| unfoldable(node, e));
        }
        if op == "Shape" {
            let a = activation(node, args)?;
            let c = Const { dims: a.shape.iter().map(|&d| d as usize).collect(), data: Data::F(vec![0.0; 0]) };
            // Only the dimensions matter to Shape; evaluate it on an empty stand-in.
            let c = Const { data: Data::I(Vec::new()), ..c };
            return fold::eval(node, &[Some(&c)], self.opset).map(Val::C).map_err(|e| unfoldable(node, e));
        }
        if node.outputs.iter().skip(1).any(|o| !o.is_empty()) && op != "Dropout" {
            return Err(bad(node, "only the first output may be used"));
        }
        match op {
            "Identity" | "Dropout" => Ok(Val::A(activation(node, args)?)),
            "Conv" => self.conv(node, args),
            "ConvTranspose" => self.conv_transpose(node, args),
            "Pad" => self.pad(node, args),
            "Upsample" | "Resize" => self.upsample(node, args),
            "Slice" => self.crop(node, args),
            "InstanceNormalization" => self.instance_norm(node, args),
            "BatchNormalization" => self.batch_norm(node, args),
            "Relu" => self.relu(node, args),
            "Tanh" | "Sigmoid" => self.squash(node, args),
            "Clip" => self.clip(node, args),
            "Add" | "Sub" | "Mul" | "Div" => self.arithmetic(node, args),
            _ => Err(bad(node, "is not supported on image activations")),
        }
    }
}
