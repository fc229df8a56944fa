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

use std::collections::{HashMap, HashSet, VecDeque};

use super::fold::{self, attr, attr_i, attr_ints, attr_s, Const, Data};
use super::proto::{self, Node};
use super::OnnxError;
use crate::model::description::{
    same_pad, Activation, Layer, NetworkDescription, Norm, NormKind, Op, OutputTransform, Padding,
};

/// Operators the importer understands; any other is refused before anything else is done.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv", "ConvTranspose", "InstanceNormalization", "BatchNormalization", "Relu", "Add", "Sub", "Mul",
    "Div", "Pad", "Upsample", "Resize", "Tanh", "Clip", "Sigmoid", "Shape", "Gather", "Cast",
    "Unsqueeze", "Squeeze", "Concat", "Constant", "ConstantOfShape", "Slice", "Floor", "Ceil",
    "Identity", "Dropout",
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
    Pre { src: Src, upsample: u32, pad: PrePad },
    /// `func(layer idx) * scale + offset`: the network's output transform so far.
    Out { idx: usize, stage: u32, func: Func, scale: f64, offset: f64 },
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

/// An error about one node.
fn bad(node: &Node<'_>, reason: impl Into<String>) -> OnnxError {
    OnnxError::Node { node: node_name(node), op: node.op_type.clone(), reason: reason.into() }
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
        return Err(OnnxError::Opset(format!("opset {opset} is not supported ({}..={})", OPSETS.start(), OPSETS.end())));
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
        let c = fold::decode(t).map_err(|reason| OnnxError::Tensor { name: t.name.clone(), reason })?;
        values.insert(t.name.as_str(), Val::C(c));
    }
    let inputs: Vec<&proto::ValueInfo> = graph.inputs.iter().filter(|i| !values.contains_key(i.name.as_str())).collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::Graph(format!(
            "the graph must have exactly one input that is not an initializer (an RGB image), it has {}",
            inputs.len()
        )));
    };
    if input.elem_type != proto::data_type::FLOAT {
        return Err(OnnxError::Graph(format!("input `{}` has element type {}; float is required", input.name, input.elem_type)));
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
        return Err(OnnxError::Graph(format!("the graph must have exactly one output, it has {}", graph.outputs.len())));
    };

    let order = topological_order(graph, &values)?;
    let mut b = Builder { opset, layers: Vec::new(), state: Vec::new(), tensors: HashMap::new(), input_scale: None, names: HashSet::new() };
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
    description
        .validate("the imported ONNX graph")
        .map_err(|e| OnnxError::Graph(e.to_string()))?;
    Ok(Imported { description, tensors: b.tensors, opset, producer: model.producer_name.clone(), declared_size })
}

fn show_dims(d: &[Option<i64>]) -> String {
    let parts: Vec<String> = d.iter().map(|v| v.map_or("?".into(), |v| v.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// Kahn's algorithm over the nodes; names an input nobody provides, a value produced twice,
/// or a node on a cycle.
fn topological_order(graph: &proto::Graph<'_>, known: &HashMap<&str, Val>) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if known.contains_key(o.as_str()) || producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Graph(format!("value `{o}` is produced more than once (node `{}`)", node_name(n))));
            }
        }
    }
    let mut indegree = vec![0usize; graph.nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    indegree[i] += 1;
                    users[p].push(i);
                }
                None if known.contains_key(inp.as_str()) => {}
                None => {
                    return Err(OnnxError::Graph(format!(
                        "node `{}` reads `{inp}`, which is neither an initializer, the input, nor produced by a node",
                        node_name(n)
                    )))
                }
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..graph.nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() < graph.nodes.len() {
        let stuck = (0..graph.nodes.len()).find(|&i| indegree[i] > 0).map_or(String::new(), |i| node_name(&graph.nodes[i]));
        return Err(OnnxError::Graph(format!("the graph has a cycle (through node `{stuck}`)")));
    }
    Ok(order)
}

fn constant<'v>(node: &Node<'_>, args: &[Option<&'v Val>], i: usize, what: &str) -> Result<&'v Const, OnnxError> {
    match args.get(i).copied().flatten() {
        Some(Val::C(c)) => Ok(c),
        Some(Val::A(_)) => Err(bad(node, format!("{what} must be a constant, it depends on the image"))),
        None => Err(bad(node, format!("{what} is missing"))),
    }
}

fn optional_constant<'v>(node: &Node<'_>, args: &[Option<&'v Val>], i: usize, what: &str) -> Result<Option<&'v Const>, OnnxError> {
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
            Sym::Src(Src::Layer { idx, stage }) if self.current(idx, stage) && self.state[idx].crop.is_none() => Ok(idx),
            Sym::Src(Src::Layer { idx, .. }) if self.state[idx].crop.is_some() => {
                Err(bad(node, "a ConvTranspose output must first be cropped to 2H x 2W"))
            }
            Sym::Src(Src::Layer { .. }) => Err(bad(node, "its input is an earlier state of a layer that was used elsewhere (branching graphs are not supported)")),
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
            return fold::eval(node, &consts, self.opset).map(Val::C).map_err(|r| bad(node, r));
        }
        if op == "Shape" {
            let a = activation(node, args)?;
            let c = Const { dims: a.shape.iter().map(|&d| d as usize).collect(), data: Data::F(vec![0.0; 0]) };
            // Only the dimensions matter to Shape; evaluate it on an empty stand-in.
            let c = Const { data: Data::I(Vec::new()), ..c };
            return fold::eval(node, &[Some(&c)], self.opset).map(Val::C).map_err(|r| bad(node, r));
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
            "InstanceNormalization" => {
                let a = activation(node, args)?;
                let idx = self.open_layer(node, &a)?;
                let l = &self.layers[idx];
                if l.norm.is_some() || l.activation != Activation::None || l.residual.is_some() {
                    return Err(bad(node, format!("layer `{}` already has a norm, activation or residual before it", l.name)));
                }
                let c = a.shape[1] as usize;
                let scale = constant(node, args, 1, "scale")?.as_f32();
                let shift = constant(node, args, 2, "B")?.as_f32();
                if scale.len() != c || shift.len() != c {
                    return Err(bad(node, format!("scale and B must have {c} values")));
                }
                let eps = attr(node, "epsilon").and_then(|a| a.f).unwrap_or(1e-5);
                let name = l.name.clone();
                let (sn, hn) = (format!("{name}.norm.scale"), format!("{name}.norm.shift"));
                self.tensors.insert(sn.clone(), scale);
                self.tensors.insert(hn.clone(), shift);
                self.layers[idx].norm = Some(Norm { kind: NormKind::Instance, scale: sn, shift: hn, eps });
                Ok(self.bump(idx, a.shape))
            }
            "BatchNormalization" => self.batch_norm(node, args),
            "Relu" => {
                let a = activation(node, args)?;
                let idx = self.open_layer(node, &a)?;
                let l = &mut self.layers[idx];
                if l.activation != Activation::None || l.residual.is_some() {
                    return Err(bad(node, format!("layer `{}` already has an activation or a residual add", l.name)));
                }
                l.activation = Activation::Relu;
                Ok(self.bump(idx, a.shape))
            }
            "Tanh" | "Sigmoid" => {
                let a = activation(node, args)?;
                let func = if op == "Tanh" { Func::Tanh } else { Func::Sigmoid };
                match a.sym {
                    Sym::Src(Src::Layer { .. }) => {
                        let idx = self.open_layer(node, &a)?;
                        let stage = self.state[idx].stage;
                        Ok(Val::A(Act { sym: Sym::Out { idx, stage, func, scale: 1.0, offset: 0.0 }, ..a }))
                    }
                    Sym::Out { idx, stage, func: Func::None, scale, offset } if scale == 1.0 && offset == 0.0 => {
                        Ok(Val::A(Act { sym: Sym::Out { idx, stage, func, scale, offset }, ..a }))
                    }
                    _ => Err(bad(node, "only one Tanh or Sigmoid, straight after the last layer, is supported")),
                }
            }
            "Clip" => {
                let a = activation(node, args)?;
                let (lo, hi) = if self.opset < 11 {
                    (attr(node, "min").and_then(|a| a.f).unwrap_or(f32::MIN) as f64, attr(node, "max").and_then(|a| a.f).unwrap_or(f32::MAX) as f64)
                } else {
                    let get = |i, what| -> Result<Option<f64>, OnnxError> {
                        Ok(optional_constant(node, args, i, what)?.and_then(|c| c.uniform()))
                    };
                    (get(1, "min")?.unwrap_or(f64::MIN), get(2, "max")?.unwrap_or(f64::MAX))
                };
                if lo > 0.0 || hi < 255.0 {
                    return Err(bad(node, format!("Clip to [{lo}, {hi}] is narrower than the display range [0, 255]; only the output's final clamp is supported")));
                }
                self.output_op(node, a, 1.0, 0.0)
            }
            "Add" | "Sub" | "Mul" | "Div" => self.arithmetic(node, args),
            _ => Err(bad(node, "is not supported on image activations")),
        }
    }

    /// The source of a conv's input, with the upsampling and pads in front of it.
    fn conv_input(&self, node: &Node<'_>, a: &Act) -> Result<(Src, u32, PrePad), OnnxError> {
        let (src, up, pad) = match a.sym {
            Sym::Src(s) => (s, 1, None),
            Sym::Pre { src, upsample, pad } => (src, upsample, pad),
            Sym::Out { .. } => return Err(bad(node, "reads an output transform (Tanh/Mul/Add/Clip) between layers, which is not supported")),
        };
        match src {
            Src::Input { .. } if self.layers.is_empty() => {}
            Src::Input { .. } => return Err(bad(node, "reads the network input, but only the first layer may")),
            Src::Layer { idx, .. } if idx + 1 != self.layers.len() => {
                return Err(bad(node, "its input is not the previous layer's output (branching graphs are not supported)"))
            }
            Src::Layer { idx, stage } => {
                if self.state[idx].crop.is_some() {
                    return Err(bad(node, "a ConvTranspose output must first be cropped to 2H x 2W"));
                }
                if !self.current(idx, stage) {
                    return Err(bad(node, "its input is an earlier state of a layer that was used elsewhere (branching graphs are not supported)"));
                }
            }
        }
        Ok((src, up, pad))
    }

    fn layer_name(&mut self, node: &Node<'_>) -> String {
        let mut name = if node.name.is_empty() { format!("layer{}", self.layers.len()) } else { node.name.clone() };
        if !self.names.insert(name.clone()) {
            name = format!("{name}#{}", self.layers.len());
            self.names.insert(name.clone());
        }
        name
    }

    /// Common checks of Conv and ConvTranspose attributes; returns (kernel, stride).
    fn conv_attrs(&self, node: &Node<'_>, w: &Const) -> Result<(u32, u32), OnnxError> {
        if w.dims.len() != 4 || w.dims[2] != w.dims[3] || w.dims[2].is_multiple_of(2) || w.dims[2] > 11 {
            return Err(bad(node, format!("weights of shape {:?}: square odd 2-D kernels up to 11 are supported", w.dims)));
        }
        if attr_i(node, "group").unwrap_or(1) != 1 {
            return Err(bad(node, "grouped convolutions are not supported"));
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(bad(node, "dilated convolutions are not supported"));
        }
        if attr_ints(node, "kernel_shape").is_some_and(|k| k.iter().any(|&v| v as usize != w.dims[2])) {
            return Err(bad(node, "kernel_shape does not match the weights"));
        }
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let s = strides.first().copied().unwrap_or(1);
        if strides.len() != 2 || strides[1] != s || !(1..=2).contains(&s) {
            return Err(bad(node, format!("strides {strides:?}: equal strides of 1 or 2 are supported")));
        }
        Ok((w.dims[2] as u32, s as u32))
    }

    fn bias(&self, node: &Node<'_>, args: &[Option<&Val>], oc: usize) -> Result<Option<Vec<f32>>, OnnxError> {
        match optional_constant(node, args, 2, "bias")? {
            None => Ok(None),
            Some(b) if b.len() == oc => Ok(Some(b.as_f32())),
            Some(b) => Err(bad(node, format!("bias has {} values, expected {oc}", b.len()))),
        }
    }

    fn push_layer(&mut self, node: &Node<'_>, mut layer: Layer, weight: Vec<f32>, bias: Option<Vec<f32>>, src: Src) -> usize {
        let name = self.layer_name(node);
        layer.name = name.clone();
        layer.weight = format!("{name}.weight");
        self.tensors.insert(layer.weight.clone(), weight);
        if let Some(b) = bias {
            layer.bias = Some(format!("{name}.bias"));
            self.tensors.insert(format!("{name}.bias"), b);
        }
        match src {
            Src::Input { scale } => self.input_scale = Some(scale),
            Src::Layer { idx, .. } => self.state[idx].closed = true,
        }
        self.layers.push(layer);
        self.state.push(LayerState::default());
        self.layers.len() - 1
    }

    fn conv(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, up, pre_pad) = self.conv_input(node, &a)?;
        let w = constant(node, args, 1, "weights")?;
        let (k, s) = self.conv_attrs(node, w)?;
        let (oc, ic) = (w.dims[0], w.dims[1]);
        if ic as i64 != a.shape[1] {
            return Err(bad(node, format!("weights expect {ic} input channels, the input has {}", a.shape[1])));
        }
        // The image before the Pad node (after upsampling).
        let (n_h, n_w) = match pre_pad {
            Some((_, p)) => (a.shape[2] - p[0] - p[2], a.shape[3] - p[1] - p[3]),
            None => (a.shape[2], a.shape[3]),
        };
        let conv_pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        if conv_pads.len() != 4 || conv_pads.iter().any(|&p| p < 0) {
            return Err(bad(node, format!("pads {conv_pads:?} are not 2-D")));
        }
        let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let same = |n: i64| same_pad(n as u32, k, s);
        let conv_pads: [i64; 4] = match auto.as_str() {
            "NOTSET" | "" => [conv_pads[0], conv_pads[1], conv_pads[2], conv_pads[3]],
            "VALID" => [0; 4],
            "SAME_UPPER" if pre_pad.is_none() => {
                let (h, w) = (same(n_h), same(n_w));
                [h.0 as i64, w.0 as i64, h.1 as i64, w.1 as i64]
            }
            other => return Err(bad(node, format!("auto_pad {other} is not supported here"))),
        };
        let half = (k / 2) as i64;
        let padding = match pre_pad {
            Some((PadMode::Reflect, p)) if conv_pads == [0; 4] && p == [half; 4] => Padding::Reflect,
            Some((PadMode::Reflect, p)) => {
                return Err(bad(node, format!("reflection pads {p:?} with conv pads {conv_pads:?}: only reflection of kernel/2 = {half} on every side is supported")))
            }
            zero => {
                let p = zero.map_or([0; 4], |(_, p)| p);
                let total = [p[0] + conv_pads[0], p[1] + conv_pads[1], p[2] + conv_pads[2], p[3] + conv_pads[3]];
                let (h, w) = (same(n_h), same(n_w));
                if total == [h.0 as i64, w.0 as i64, h.1 as i64, w.1 as i64] {
                    Padding::Same
                } else {
                    return Err(bad(node, format!(
                        "zero padding {total:?} (top, left, bottom, right) at {n_h}x{n_w} is neither TensorFlow 'SAME' ({h:?}, {w:?}) nor reflection: not supported by the kernels"
                    )));
                }
            }
        };
        let weight = w.as_f32();
        let bias = self.bias(node, args, oc)?;
        let layer = Layer {
            name: String::new(),
            op: Op::Conv,
            weight: String::new(),
            bias: None,
            in_channels: ic as u32,
            out_channels: oc as u32,
            kernel: k,
            stride: s,
            upsample: up,
            padding,
            norm: None,
            activation: Activation::None,
            residual: None,
        };
        // ONNX's output size; the description's rule must agree with it at the probe size.
        let out = |n: i64| (n + if padding == Padding::Reflect { 2 * half } else { 0 } - k as i64) / s as i64 + 1;
        let (oh, ow) = match pre_pad {
            Some(_) => (out(n_h), out(n_w)),
            None => {
                let t = conv_pads;
                ((a.shape[2] + t[0] + t[2] - k as i64) / s as i64 + 1, (a.shape[3] + t[1] + t[3] - k as i64) / s as i64 + 1)
            }
        };
        let (dh, dw) = (layer.out_dim((n_h / up as i64) as u32) as i64, layer.out_dim((n_w / up as i64) as u32) as i64);
        if (oh, ow) != (dh, dw) {
            return Err(bad(node, format!("output {oh}x{ow} differs from the layer rule's {dh}x{dw}")));
        }
        let idx = self.push_layer(node, layer, weight, bias, src);
        Ok(Val::A(Act { shape: [1, oc as i64, oh, ow], sym: Sym::Src(Src::Layer { idx, stage: 0 }) }))
    }

    fn conv_transpose(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, up, pad) = self.conv_input(node, &a)?;
        if up != 1 || pad.is_some() {
            return Err(bad(node, "upsampling or padding before a ConvTranspose is not supported"));
        }
        let w = constant(node, args, 1, "weights")?;
        let (k, s) = self.conv_attrs(node, w)?;
        let (ic, oc) = (w.dims[0], w.dims[1]);
        if ic as i64 != a.shape[1] {
            return Err(bad(node, format!("weights expect {ic} input channels, the input has {}", a.shape[1])));
        }
        if s != 2 || k < 3 {
            return Err(bad(node, "ConvTranspose must have stride 2 and a kernel of at least 3"));
        }
        if attr(node, "output_shape").is_some() || attr_s(node, "auto_pad").is_some_and(|v| v != "NOTSET") {
            return Err(bad(node, "output_shape and auto_pad are not supported; give explicit pads"));
        }
        if attr_ints(node, "output_padding").is_some_and(|p| p.iter().any(|&v| v != 0)) {
            return Err(bad(node, "output_padding is not supported"));
        }
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        let e = k as i64 - 2;
        let (h, w2) = (a.shape[2], a.shape[3]);
        let crop = match pads.as_slice() {
            [0, 0, b, r] if *b == e && *r == e => None,
            [0, 0, 0, 0] => Some((2 * h, 2 * w2)),
            _ => {
                return Err(bad(node, format!(
                    "pads {pads:?}: TensorFlow's conv2d_transpose (output 2H x 2W) is pads [0, 0, {e}, {e}], or pads 0 and a Slice"
                )))
            }
        };
        let weight = w.as_f32();
        let bias = self.bias(node, args, oc)?;
        let layer = Layer {
            name: String::new(),
            op: Op::ConvTranspose,
            weight: String::new(),
            bias: None,
            in_channels: ic as u32,
            out_channels: oc as u32,
            kernel: k,
            stride: 2,
            upsample: 1,
            padding: Padding::Same,
            norm: None,
            activation: Activation::None,
            residual: None,
        };
        let idx = self.push_layer(node, layer, weight, bias, src);
        self.state[idx].crop = crop;
        let extra = if crop.is_some() { e } else { 0 };
        Ok(Val::A(Act { shape: [1, oc as i64, 2 * h + extra, 2 * w2 + extra], sym: Sym::Src(Src::Layer { idx, stage: 0 }) }))
    }

    /// A Slice of an activation: only the crop of a ConvTranspose to 2H x 2W.
    fn crop(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let Sym::Src(Src::Layer { idx, stage }) = a.sym else {
            return Err(bad(node, "a Slice of the image is only supported as the crop after a ConvTranspose"));
        };
        let Some((th, tw)) = self.state[idx].crop.filter(|_| self.current(idx, stage)) else {
            return Err(bad(node, "a Slice of the image is only supported as the crop after a ConvTranspose"));
        };
        let consts: Vec<Option<&Const>> = args.iter().map(|a| a.and_then(|v| if let Val::C(c) = v { Some(c) } else { None })).collect();
        let (starts, ends, axes, steps) = fold::slice_args(node, &consts, self.opset).map_err(|r| bad(node, r))?;
        let mut kept = a.shape.map(|d| (0..d as usize).collect::<Vec<_>>());
        for k in 0..starts.len() {
            let ax = axes.as_ref().map_or(k as i64, |x| x[k]);
            let ax = if ax < 0 { ax + 4 } else { ax };
            if !(0..4).contains(&ax) {
                return Err(bad(node, format!("axis {ax} out of range")));
            }
            let step = steps.as_ref().map_or(1, |s| s[k]);
            kept[ax as usize] = fold::slice_indices(a.shape[ax as usize], starts[k], ends[k], step).map_err(|r| bad(node, r))?;
        }
        let prefix = |v: &Vec<usize>, n: i64| v.len() as i64 == n && v.iter().enumerate().all(|(i, &x)| i == x);
        if !(prefix(&kept[0], a.shape[0]) && prefix(&kept[1], a.shape[1]) && prefix(&kept[2], th) && prefix(&kept[3], tw)) {
            return Err(bad(node, format!("this Slice does not keep the top-left {th}x{tw} of the ConvTranspose output")));
        }
        self.state[idx].crop = None;
        Ok(self.bump(idx, [a.shape[0], a.shape[1], th, tw]))
    }

    fn pad(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, upsample) = match a.sym {
            Sym::Src(s) => (s, 1),
            Sym::Pre { src, upsample, pad: None } => (src, upsample),
            _ => return Err(bad(node, "a Pad must come straight before a convolution (after an optional upsample)")),
        };
        let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
        let (pads, value) = if self.opset < 11 {
            let p = attr_ints(node, "pads").or_else(|| attr_ints(node, "paddings")).ok_or_else(|| bad(node, "no pads"))?;
            (p, attr(node, "value").and_then(|a| a.f).unwrap_or(0.0) as f64)
        } else {
            let p = constant(node, args, 1, "pads")?.as_i64("pads").map_err(|r| bad(node, r))?;
            let v = optional_constant(node, args, 2, "constant_value")?.and_then(|c| c.uniform()).unwrap_or(0.0);
            let p = match optional_constant(node, args, 3, "axes")? {
                None => p,
                Some(axes) => {
                    let axes = axes.as_i64("axes").map_err(|r| bad(node, r))?;
                    if p.len() != 2 * axes.len() {
                        return Err(bad(node, "pads and axes lengths disagree"));
                    }
                    let mut full = vec![0i64; 8];
                    for (i, &ax) in axes.iter().enumerate() {
                        let ax = if ax < 0 { ax + 4 } else { ax };
                        if !(0..4).contains(&ax) {
                            return Err(bad(node, format!("axis {ax} out of range")));
                        }
                        full[ax as usize] = p[i];
                        full[ax as usize + 4] = p[i + axes.len()];
                    }
                    full
                }
            };
            (p, v)
        };
        if pads.len() != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads.iter().any(|&p| !(0..=64).contains(&p)) {
            return Err(bad(node, format!("pads {pads:?}: only non-negative padding of height and width (up to 64) is supported")));
        }
        let mode = match mode.as_str() {
            "reflect" => PadMode::Reflect,
            "constant" if value == 0.0 => PadMode::Zero,
            "constant" => return Err(bad(node, format!("constant padding with {value} (only 0 is supported)"))),
            other => return Err(bad(node, format!("{other} padding is not supported by the kernels (reflect and zero are)"))),
        };
        let p = [pads[2], pads[3], pads[6], pads[7]];
        if mode == PadMode::Reflect && (p[0] >= a.shape[2] || p[2] >= a.shape[2] || p[1] >= a.shape[3] || p[3] >= a.shape[3]) {
            return Err(bad(node, "reflection pads must be smaller than the image"));
        }
        let shape = [a.shape[0], a.shape[1], a.shape[2] + p[0] + p[2], a.shape[3] + p[1] + p[3]];
        Ok(Val::A(Act { shape, sym: Sym::Pre { src, upsample, pad: Some((mode, p)) } }))
    }

    fn upsample(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let Sym::Src(src) = a.sym else {
            return Err(bad(node, "upsampling must come before padding, straight after a layer"));
        };
        if let Src::Layer { idx, stage } = src {
            if !self.current(idx, stage) || idx + 1 != self.layers.len() {
                return Err(bad(node, "its input is not the newest layer's output"));
            }
        }
        let mode = attr_s(node, "mode").unwrap_or_else(|| "nearest".into());
        if mode != "nearest" {
            return Err(bad(node, format!("mode `{mode}`: only nearest upsampling is supported")));
        }
        let (h, w) = (a.shape[2], a.shape[3]);
        let mut axes_note = String::new();
        let target: Vec<f64> = if node.op_type == "Upsample" {
            match attr(node, "scales") {
                Some(s) if !s.floats.is_empty() => s.floats.iter().map(|&v| v as f64).collect(),
                _ => constant(node, args, 1, "scales")?.as_f64(),
            }
        } else {
            let (si, zi) = if self.opset < 11 { (1, usize::MAX) } else { (2, 3) };
            let scales = optional_constant(node, args, si, "scales")?;
            let sizes = optional_constant(node, args, zi, "sizes")?;
            let mut v = match (scales, sizes) {
                (Some(s), _) => s.as_f64(),
                (None, Some(z)) => {
                    let z = z.as_f64();
                    let full = [a.shape[0] as f64, a.shape[1] as f64, h as f64, w as f64];
                    let off = 4usize.saturating_sub(z.len());
                    z.iter().enumerate().map(|(i, &n)| n / full[(i + off).min(3)]).collect()
                }
                (None, None) => return Err(bad(node, "neither scales nor sizes given")),
            };
            if let Some(axes) = attr_ints(node, "axes") {
                let mut full = vec![1.0; 4];
                for (i, &ax) in axes.iter().enumerate() {
                    let ax = if ax < 0 { ax + 4 } else { ax };
                    if let (Some(slot), Some(&s)) = (full.get_mut(ax as usize), v.get(i)) {
                        *slot = s;
                    }
                }
                v = full;
                axes_note = format!(" (axes {axes:?})");
            }
            let ctm = if self.opset < 11 { "asymmetric".to_string() } else { attr_s(node, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into()) };
            let nearest = if self.opset < 11 { "floor".to_string() } else { attr_s(node, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into()) };
            if !nearest_is_repeat(&ctm, &nearest) {
                return Err(bad(node, format!(
                    "coordinate_transformation_mode `{ctm}` with nearest_mode `{nearest}` is not a plain 2x pixel repeat"
                )));
            }
            v
        };
        if target != [1.0, 1.0, 2.0, 2.0] {
            return Err(bad(node, format!("scales {target:?}{axes_note} at {h}x{w}: only nearest 2x upsampling of height and width is supported")));
        }
        Ok(Val::A(Act { shape: [a.shape[0], a.shape[1], 2 * h, 2 * w], sym: Sym::Pre { src, upsample: 2, pad: None } }))
    }

    fn batch_norm(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let idx = self.open_layer(node, &a)?;
        let l = &self.layers[idx];
        if l.norm.is_some() || l.activation != Activation::None || l.residual.is_some() {
            return Err(bad(node, format!("a BatchNormalization is folded into its convolution, but layer `{}` already has a norm, activation or residual", l.name)));
        }
        if attr_i(node, "training_mode").unwrap_or(0) != 0 {
            return Err(bad(node, "training mode is not supported"));
        }
        let c = l.out_channels as usize;
        let get = |i, what| -> Result<Vec<f64>, OnnxError> {
            let v = constant(node, args, i, what)?.as_f64();
            if v.len() == c { Ok(v) } else { Err(bad(node, format!("{what} must have {c} values"))) }
        };
        let (scale, b, mean, var) = (get(1, "scale")?, get(2, "B")?, get(3, "mean")?, get(4, "var")?);
        let eps = attr(node, "epsilon").and_then(|a| a.f).unwrap_or(1e-5) as f64;
        let mul: Vec<f64> = (0..c).map(|o| scale[o] / (var[o] + eps).sqrt()).collect();
        if mul.iter().any(|m| !m.is_finite()) {
            return Err(bad(node, "variance + epsilon must be positive"));
        }
        // y = (conv(x) + bias - mean) * mul + B: scale the output channels' weights.
        let (wname, op, ic) = (l.weight.clone(), l.op, l.in_channels as usize);
        let k2 = (l.kernel * l.kernel) as usize;
        if let Some(w) = self.tensors.get_mut(&wname) {
            for (i, v) in w.iter_mut().enumerate() {
                let o = match op {
                    Op::Conv => i / (ic * k2),
                    Op::ConvTranspose => (i / k2) % c,
                };
                *v = (*v as f64 * mul[o]) as f32;
            }
        }
        let name = l.name.clone();
        let old = l.bias.as_ref().and_then(|n| self.tensors.get(n)).cloned().unwrap_or_else(|| vec![0.0; c]);
        let bias: Vec<f32> = (0..c).map(|o| ((old[o] as f64 - mean[o]) * mul[o] + b[o]) as f32).collect();
        self.tensors.insert(format!("{name}.bias"), bias);
        self.layers[idx].bias = Some(format!("{name}.bias"));
        Ok(self.bump(idx, a.shape))
    }

    /// Starts or extends the output transform `func(x) * scale + offset` with `* mul + add`.
    fn output_op(&mut self, node: &Node<'_>, a: Act, mul: f64, add: f64) -> Result<Val, OnnxError> {
        let sym = match a.sym {
            Sym::Src(Src::Layer { .. }) => {
                let idx = self.open_layer(node, &a)?;
                Sym::Out { idx, stage: self.state[idx].stage, func: Func::None, scale: mul, offset: add }
            }
            Sym::Out { idx, stage, func, scale, offset } => Sym::Out { idx, stage, func, scale: scale * mul, offset: offset * mul + add },
            _ => return Err(bad(node, "only the network's output may be transformed here")),
        };
        Ok(Val::A(Act { sym, ..a }))
    }

    fn arithmetic(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let op = node.op_type.as_str();
        let (x, y) = match (args.first().copied().flatten(), args.get(1).copied().flatten()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(bad(node, "needs two inputs")),
        };
        match (x, y) {
            (Val::A(a), Val::A(b)) if op == "Add" => self.residual(node, *a, *b),
            (Val::A(_), Val::A(_)) => Err(bad(node, format!("{op} of two activations is not supported (only a residual Add)"))),
            (Val::A(a), Val::C(c)) | (Val::C(c), Val::A(a)) => {
                let const_first = matches!(x, Val::C(_));
                let a = *a;
                // Input scaling: x * s or x / s, before the first layer.
                if let Sym::Src(Src::Input { scale }) = a.sym {
                    let s = c.uniform().filter(|s| *s > 0.0 && s.is_finite());
                    return match (op, s, const_first) {
                        ("Mul", Some(s), _) => Ok(Val::A(Act { sym: Sym::Src(Src::Input { scale: scale * s as f32 }), ..a })),
                        ("Div", Some(s), false) => Ok(Val::A(Act { sym: Sym::Src(Src::Input { scale: scale / s as f32 }), ..a })),
                        _ => Err(bad(node, "input preprocessing other than multiplying or dividing by one positive constant is not supported")),
                    };
                }
                // A scalar or per-channel ([1, C, 1, 1] / [C, 1, 1]) constant added straight
                // after a conv, before any norm or activation: part of its bias.
                if let Sym::Src(Src::Layer { idx, .. }) = a.sym {
                    let l = &self.layers[idx];
                    let oc = l.out_channels as usize;
                    let conv_stage = l.norm.is_none() && l.activation == Activation::None && l.residual.is_none();
                    let r = c.dims.len();
                    let per_channel = c.len() == 1
                        || ((3..=4).contains(&r) && c.dims[r - 3] == oc && c.dims[r - 2] == 1 && c.dims[r - 1] == 1 && c.len() == oc);
                    if (op == "Add" || (op == "Sub" && !const_first)) && conv_stage && per_channel {
                        let idx = self.open_layer(node, &a)?;
                        let sign = if op == "Sub" { -1.0 } else { 1.0 };
                        let name = self.layers[idx].name.clone();
                        let old = self.layers[idx].bias.as_ref().and_then(|n| self.tensors.get(n)).cloned().unwrap_or_else(|| vec![0.0; oc]);
                        let add = c.as_f32();
                        let bias = (0..oc).map(|o| old[o] + sign * add[if add.len() == 1 { 0 } else { o }]).collect();
                        self.tensors.insert(format!("{name}.bias"), bias);
                        self.layers[idx].bias = Some(format!("{name}.bias"));
                        return Ok(self.bump(idx, a.shape));
                    }
                }
                let Some(v) = c.uniform().filter(|v| v.is_finite()) else {
                    return Err(bad(node, format!("{op} by a per-channel or per-pixel constant is only supported as a conv bias")));
                };
                match (op, const_first) {
                    ("Mul", _) => self.output_op(node, a, v, 0.0),
                    ("Add", _) => self.output_op(node, a, 1.0, v),
                    ("Sub", false) => self.output_op(node, a, 1.0, -v),
                    ("Sub", true) => self.output_op(node, a, -1.0, v),
                    ("Div", false) if v != 0.0 => self.output_op(node, a, 1.0 / v, 0.0),
                    _ => Err(bad(node, format!("{op} with the constant as divisor-of-image is not supported"))),
                }
            }
            (Val::C(_), Val::C(_)) => Err(bad(node, "internal: constant operands should have been folded")),
        }
    }

    /// `layer + earlier layer`: the residual of the newest layer.
    fn residual(&mut self, node: &Node<'_>, a: Act, b: Act) -> Result<Val, OnnxError> {
        let layer_of = |x: &Act| match x.sym {
            Sym::Src(Src::Layer { idx, stage }) => Some((idx, stage)),
            _ => None,
        };
        let (Some(pa), Some(pb)) = (layer_of(&a), layer_of(&b)) else {
            return Err(bad(node, "an Add of two activations must add two layer outputs (a residual)"));
        };
        let (main, skip, shape) = if pa.0 > pb.0 { (pa, pb, a.shape) } else { (pb, pa, b.shape) };
        let main_act = if pa.0 > pb.0 { a } else { b };
        let idx = self.open_layer(node, &main_act)?;
        if idx + 1 != self.layers.len() {
            return Err(bad(node, "the residual must be added to the newest layer"));
        }
        // The skip value must be the final state of its layer.
        if self.state[skip.0].stage != skip.1 || self.state[skip.0].crop.is_some() {
            return Err(bad(node, "the residual source is not the final output of its layer"));
        }
        if a.shape != b.shape {
            return Err(bad(node, format!("shapes {:?} and {:?} differ", a.shape, b.shape)));
        }
        let _ = main;
        let skip_name = self.layers[skip.0].name.clone();
        let l = &mut self.layers[idx];
        if l.residual.is_some() {
            return Err(bad(node, format!("layer `{}` already has a residual", l.name)));
        }
        l.residual = Some(skip_name);
        Ok(self.bump(idx, shape))
    }
}

/// Whether Resize's coordinate rule, at scale 2, maps output pixel i to input pixel i / 2
/// (checked at several input sizes).
fn nearest_is_repeat(ctm: &str, nearest: &str) -> bool {
    [2usize, 3, 8, 9].iter().all(|&n| {
        let n_in = n as f64;
        (0..2 * n).all(|i| {
            let i = i as f64;
            let x = match ctm {
                "half_pixel" | "pytorch_half_pixel" => (i + 0.5) / 2.0 - 0.5,
                "asymmetric" => i / 2.0,
                "tf_half_pixel_for_nn" => (i + 0.5) / 2.0,
                "align_corners" => i * (n_in - 1.0) / (2.0 * n_in - 1.0),
                _ => return false,
            };
            let r = match nearest {
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "round_prefer_floor" => if x.fract() == 0.5 { x.floor() } else { x.round() },
                "round_prefer_ceil" => if x.fract() == 0.5 { x.ceil() } else { x.round() },
                _ => return false,
            };
            r.clamp(0.0, n_in - 1.0) == (i / 2.0).floor()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_modes_that_repeat_pixels() {
        assert!(nearest_is_repeat("asymmetric", "floor"));
        assert!(nearest_is_repeat("half_pixel", "round_prefer_floor"));
        assert!(nearest_is_repeat("pytorch_half_pixel", "round_prefer_ceil"));
        assert!(!nearest_is_repeat("asymmetric", "ceil"));
        // align_corners rounds to the repeat too at scale 2 (x = j + (n-1-j)/(2n-1)); ceil does not.
        assert!(nearest_is_repeat("align_corners", "round_prefer_floor"));
        assert!(!nearest_is_repeat("align_corners", "ceil"));
        assert!(!nearest_is_repeat("half_pixel", "floor"));
    }
}
