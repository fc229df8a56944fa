//! Constant folding of the shape arithmetic exporters write into graphs (Shape, Gather, Cast,
//! Unsqueeze, Concat, Constant, Slice, Div, Floor, ...): small tensors evaluated at import.

use super::proto::{data_type, Attribute, Node, Tensor};

/// Why a constant cannot be decoded or folded, naming the value, dimension, axis or operator
/// concerned. The importer reports it with the tensor or node it happened in
/// (`OnnxError::Tensor`, `OnnxError::Fold`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    #[error("{what}: {value} is not a whole number")]
    NotWhole { what: &'static str, value: f32 },
    #[error("negative dimension {0}")]
    NegativeDimension(i64),
    #[error("dimensions {dims:?} exceed the limit of {MAX_ELEMENTS} elements")]
    TooLarge { dims: Vec<i64> },
    #[error("its data is stored in an external file, which is not supported")]
    ExternalData,
    #[error("dimensions {dims:?} need {need} values, the tensor holds {found}")]
    ValueCount { dims: Vec<i64>, need: usize, found: usize },
    #[error("element type {0} is not supported (float, double, int32, int64 are)")]
    ElementType(i32),
    #[error("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})")]
    Broadcast { a: Vec<usize>, b: Vec<usize>, x: usize, y: usize },
    #[error("integer division by zero")]
    DivisionByZero,
    #[error("{op} of an integer and a float tensor")]
    MixedTypes { op: String },
    #[error("axis {axis} is out of range for rank {rank}")]
    Axis { axis: i64, rank: usize },
    #[error("input {0} is missing")]
    MissingInput(usize),
    #[error("{op} without {what}")]
    Missing { op: &'static str, what: &'static str },
    #[error("no supported value attribute")]
    NoValue,
    #[error("Cast to element type {0} is not supported")]
    CastTo(i32),
    #[error("{op} of a scalar")]
    Scalar { op: &'static str },
    #[error("Gather index {index} out of range 0..{len}")]
    GatherIndex { index: i64, len: i64 },
    #[error("Squeeze of axis {axis} with size {size}")]
    Squeeze { axis: usize, size: usize },
    #[error("Concat of incompatible tensors {a:?} and {b:?}")]
    ConcatShapes { a: Vec<usize>, b: Vec<usize> },
    #[error("Slice arguments have different lengths")]
    SliceLengths,
    #[error("Slice step 0")]
    SliceStep0,
    #[error("{op} cannot be folded")]
    NotFoldable { op: String },
}

/// The largest constant the importer will build or decode, in elements (16 Mi f32 = 64 MiB;
/// the largest zoo tensor has 0.15 Mi). Declared sizes above it are refused before allocating.
pub const MAX_ELEMENTS: usize = 1 << 24;

/// A constant tensor: float (f32, like ONNX FLOAT) or integer (i64) values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

impl Const {
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn scalar_i(v: i64) -> Self {
        Self { dims: vec![], data: Data::I(vec![v]) }
    }

    pub fn ints(v: Vec<i64>) -> Self {
        Self { dims: vec![v.len()], data: Data::I(v) }
    }

    /// Values as f64 (either type).
    pub fn as_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Values as integers (floats must be whole).
    pub fn as_i64(&self, what: &'static str) -> Result<Vec<i64>, FoldError> {
        match &self.data {
            Data::I(v) => Ok(v.clone()),
            Data::F(v) => v
                .iter()
                .map(|&x| {
                    if x.fract() == 0.0 && x.abs() < 9e15 {
                        Ok(x as i64)
                    } else {
                        Err(FoldError::NotWhole { what, value: x })
                    }
                })
                .collect(),
        }
    }

    pub fn as_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The single value all elements share, if they do (a scalar or a broadcast constant).
    pub fn uniform(&self) -> Option<f64> {
        let v = self.as_f64();
        let first = *v.first()?;
        v.iter().all(|&x| x == first).then_some(first)
    }
}

/// Element count of `dims`, refusing negative dimensions and anything above `MAX_ELEMENTS`.
pub fn element_count(dims: &[i64]) -> Result<usize, FoldError> {
    let mut n = 1usize;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| FoldError::NegativeDimension(d))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| FoldError::TooLarge { dims: dims.to_vec() })?;
    }
    Ok(n)
}

/// Decodes a TensorProto's values, checking that their count matches its dimensions.
pub fn decode(t: &Tensor<'_>) -> Result<Const, FoldError> {
    if t.external {
        return Err(FoldError::ExternalData);
    }
    let n = element_count(&t.dims)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let mismatch = |found: usize| FoldError::ValueCount { dims: t.dims.clone(), need: n, found };
    let data = match (t.data_type, t.raw_data) {
        (data_type::FLOAT, Some(raw)) => {
            if raw.len() != n * 4 {
                return Err(mismatch(raw.len() / 4));
            }
            Data::F(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        (data_type::DOUBLE, Some(raw)) => {
            if raw.len() != n * 8 {
                return Err(mismatch(raw.len() / 8));
            }
            Data::F(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect(),
            )
        }
        (data_type::INT64, Some(raw)) => {
            if raw.len() != n * 8 {
                return Err(mismatch(raw.len() / 8));
            }
            Data::I(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            )
        }
        (data_type::INT32, Some(raw)) => {
            if raw.len() != n * 4 {
                return Err(mismatch(raw.len() / 4));
            }
            Data::I(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
        }
        (data_type::FLOAT, None) if t.float_data.len() == n => Data::F(t.float_data.clone()),
        (data_type::FLOAT, None) => return Err(mismatch(t.float_data.len())),
        (data_type::DOUBLE, None) if t.double_data.len() == n => {
            Data::F(t.double_data.iter().map(|&v| v as f32).collect())
        }
        (data_type::DOUBLE, None) => return Err(mismatch(t.double_data.len())),
        (data_type::INT64, None) if t.int64_data.len() == n => Data::I(t.int64_data.clone()),
        (data_type::INT64, None) => return Err(mismatch(t.int64_data.len())),
        (data_type::INT32, None) if t.int32_data.len() == n => {
            Data::I(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        (data_type::INT32, None) => return Err(mismatch(t.int32_data.len())),
        (other, _) => return Err(FoldError::ElementType(other)),
    };
    Ok(Const { dims, data })
}

pub fn attr<'n, 'a>(node: &'n Node<'a>, name: &str) -> Option<&'n Attribute<'a>> {
    node.attributes.iter().find(|a| a.name == name)
}

pub fn attr_i(node: &Node<'_>, name: &str) -> Option<i64> {
    attr(node, name).and_then(|a| a.i)
}

pub fn attr_ints(node: &Node<'_>, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_s(node: &Node<'_>, name: &str) -> Option<String> {
    attr(node, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, FoldError> {
    let r = a.len().max(b.len());
    let get = |d: &[usize], i: usize| if i + d.len() >= r { d[i + d.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(FoldError::Broadcast { a: a.to_vec(), b: b.to_vec(), x, y }),
        })
        .collect()
}

/// Index into a broadcast operand for output index `flat`.
fn source_index(flat: usize, out: &[usize], out_strides: &[usize], src: &[usize]) -> usize {
    let off = out.len() - src.len();
    let src_strides = strides(src);
    let mut idx = 0;
    for (i, &d) in src.iter().enumerate() {
        let coord = (flat / out_strides[i + off]) % out[i + off];
        if d != 1 {
            idx += coord * src_strides[i];
        }
    }
    idx
}

/// Elementwise binary op with broadcasting; integer Div truncates (as ONNX does).
pub fn binary(op: &str, a: &Const, b: &Const) -> Result<Const, FoldError> {
    let dims = broadcast(&a.dims, &b.dims)?;
    let n = element_count(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
    let os = strides(&dims);
    let ia: Vec<usize> = (0..n).map(|i| source_index(i, &dims, &os, &a.dims)).collect();
    let ib: Vec<usize> = (0..n).map(|i| source_index(i, &dims, &os, &b.dims)).collect();
    let data = match (&a.data, &b.data) {
        (Data::I(x), Data::I(y)) => Data::I(
            (0..n)
                .map(|i| {
                    let (p, q) = (x[ia[i]], y[ib[i]]);
                    match op {
                        "Add" => Ok(p.wrapping_add(q)),
                        "Sub" => Ok(p.wrapping_sub(q)),
                        "Mul" => Ok(p.wrapping_mul(q)),
                        _ if q == 0 => Err(FoldError::DivisionByZero),
                        _ => Ok(p.wrapping_div(q)),
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        (Data::F(_), Data::F(_)) => {
            let (x, y) = (a.as_f32(), b.as_f32());
            Data::F(
                (0..n)
                    .map(|i| {
                        let (p, q) = (x[ia[i]], y[ib[i]]);
                        match op {
                            "Add" => p + q,
                            "Sub" => p - q,
                            "Mul" => p * q,
                            _ => p / q,
                        }
                    })
                    .collect(),
            )
        }
        _ => return Err(FoldError::MixedTypes { op: op.to_string() }),
    };
    Ok(Const { dims, data })
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize, FoldError> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if (0..rank as i64).contains(&a) {
        Ok(a as usize)
    } else {
        Err(FoldError::Axis { axis, rank })
    }
}

/// Picks `index[k]` along `axis` for every k: the common core of Gather and Slice.
fn take(c: &Const, axis: usize, index: &[usize]) -> Result<Const, FoldError> {
    let outer: usize = c.dims[..axis].iter().product();
    let inner: usize = c.dims[axis + 1..].iter().product();
    let d = c.dims[axis];
    let mut dims = c.dims.clone();
    dims[axis] = index.len();
    element_count(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
    let mut at = Vec::with_capacity(outer * index.len() * inner);
    for o in 0..outer {
        for &i in index {
            at.extend((0..inner).map(|j| (o * d + i) * inner + j));
        }
    }
    let data = match &c.data {
        Data::F(v) => Data::F(at.iter().map(|&i| v[i]).collect()),
        Data::I(v) => Data::I(at.iter().map(|&i| v[i]).collect()),
    };
    Ok(Const { dims, data })
}

/// Evaluates one constant-foldable node whose inputs are all constants (`None`: absent
/// optional input). `opset` picks attribute or input forms.
pub fn eval(node: &Node<'_>, inputs: &[Option<&Const>], opset: i64) -> Result<Const, FoldError> {
    let input =
        |i: usize| -> Result<&Const, FoldError> { inputs.get(i).copied().flatten().ok_or(FoldError::MissingInput(i)) };
    let op = node.op_type.as_str();
    match op {
        "Constant" => {
            if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
                return decode(t);
            }
            if let Some(a) = attr(node, "value_float").and_then(|a| a.f) {
                return Ok(Const { dims: vec![], data: Data::F(vec![a]) });
            }
            if let Some(a) = attr(node, "value_floats") {
                return Ok(Const { dims: vec![a.floats.len()], data: Data::F(a.floats.clone()) });
            }
            if let Some(v) = attr_i(node, "value_int") {
                return Ok(Const::scalar_i(v));
            }
            if let Some(v) = attr_ints(node, "value_ints") {
                return Ok(Const::ints(v));
            }
            Err(FoldError::NoValue)
        }
        "Identity" => Ok(input(0)?.clone()),
        "Add" | "Sub" | "Mul" | "Div" => binary(op, input(0)?, input(1)?),
        "Floor" | "Ceil" => {
            let c = input(0)?;
            let data = match &c.data {
                Data::F(v) => Data::F(v.iter().map(|x| if op == "Floor" { x.floor() } else { x.ceil() }).collect()),
                Data::I(v) => Data::I(v.clone()),
            };
            Ok(Const { dims: c.dims.clone(), data })
        }
        "Cast" => {
            let c = input(0)?;
            let data = match attr_i(node, "to").unwrap_or(0) as i32 {
                data_type::FLOAT | data_type::DOUBLE => Data::F(c.as_f32()),
                data_type::INT64 | data_type::INT32 => Data::I(match &c.data {
                    Data::I(v) => v.clone(),
                    Data::F(v) => v.iter().map(|&x| x.trunc() as i64).collect(),
                }),
                t => return Err(FoldError::CastTo(t)),
            };
            Ok(Const { dims: c.dims.clone(), data })
        }
        "Shape" => {
            let c = input(0)?;
            let dims: Vec<i64> = c.dims.iter().map(|&d| d as i64).collect();
            let r = dims.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clampi(attr_i(node, "start").unwrap_or(0));
            let end = clampi(attr_i(node, "end").unwrap_or(r));
            Ok(Const::ints(dims[start..end.max(start)].to_vec()))
        }
        "Gather" => {
            let (c, idx) = (input(0)?, input(1)?);
            if c.dims.is_empty() {
                return Err(FoldError::Scalar { op: "Gather" });
            }
            let axis = norm_axis(attr_i(node, "axis").unwrap_or(0), c.dims.len())?;
            let d = c.dims[axis] as i64;
            let index = idx
                .as_i64("Gather indices")?
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + d } else { i };
                    if (0..d).contains(&j) {
                        Ok(j as usize)
                    } else {
                        Err(FoldError::GatherIndex { index: i, len: d })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = take(c, axis, &index)?;
            let mut dims = c.dims[..axis].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&c.dims[axis + 1..]);
            out.dims = dims;
            Ok(out)
        }
        "Unsqueeze" | "Squeeze" => {
            let c = input(0)?;
            let axes = if opset >= 13 {
                match inputs.get(1).copied().flatten() {
                    Some(a) => Some(a.as_i64("axes")?),
                    None => None,
                }
            } else {
                attr_ints(node, "axes")
            };
            let mut dims = c.dims.clone();
            if op == "Unsqueeze" {
                let axes = axes.ok_or(FoldError::Missing { op: "Unsqueeze", what: "axes" })?;
                let rank = dims.len() + axes.len();
                let mut axes = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<Vec<_>, _>>()?;
                axes.sort_unstable();
                axes.dedup();
                for a in axes {
                    dims.insert(a.min(dims.len()), 1);
                }
            } else {
                match axes {
                    None => dims.retain(|&d| d != 1),
                    Some(axes) => {
                        let mut axes = axes.iter().map(|&a| norm_axis(a, dims.len())).collect::<Result<Vec<_>, _>>()?;
                        axes.sort_unstable();
                        for a in axes.into_iter().rev() {
                            if dims[a] != 1 {
                                return Err(FoldError::Squeeze { axis: a, size: dims[a] });
                            }
                            dims.remove(a);
                        }
                    }
                }
            }
            Ok(Const { dims, data: c.data.clone() })
        }
        "Concat" => {
            let parts: Vec<&Const> = inputs
                .iter()
                .enumerate()
                .map(|(i, c)| c.ok_or(FoldError::MissingInput(i)))
                .collect::<Result<_, _>>()?;
            let first = parts.first().ok_or(FoldError::Missing { op: "Concat", what: "inputs" })?;
            if first.dims.is_empty() {
                return Err(FoldError::Scalar { op: "Concat" });
            }
            let axis = attr_i(node, "axis").ok_or(FoldError::Missing { op: "Concat", what: "axis" })?;
            let axis = norm_axis(axis, first.dims.len())?;
            let outer: usize = first.dims[..axis].iter().product();
            let mut dims = first.dims.clone();
            dims[axis] = 0;
            let is_int = matches!(first.data, Data::I(_));
            for p in &parts {
                let same = p.dims.len() == first.dims.len()
                    && p.dims.iter().zip(&first.dims).enumerate().all(|(i, (a, b))| i == axis || a == b)
                    && matches!(p.data, Data::I(_)) == is_int;
                if !same {
                    return Err(FoldError::ConcatShapes { a: first.dims.clone(), b: p.dims.clone() });
                }
                dims[axis] += p.dims[axis];
            }
            element_count(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
            let chunk = |p: &Const| p.dims[axis..].iter().product::<usize>();
            let data = if is_int {
                let mut v = Vec::new();
                for o in 0..outer {
                    for p in &parts {
                        let c = chunk(p);
                        if let Data::I(d) = &p.data {
                            v.extend_from_slice(&d[o * c..(o + 1) * c]);
                        }
                    }
                }
                Data::I(v)
            } else {
                let floats: Vec<Vec<f32>> = parts.iter().map(|p| p.as_f32()).collect();
                let mut v = Vec::new();
                for o in 0..outer {
                    for (p, f) in parts.iter().zip(&floats) {
                        let c = chunk(p);
                        v.extend_from_slice(&f[o * c..(o + 1) * c]);
                    }
                }
                Data::F(v)
            };
            Ok(Const { dims, data })
        }
        "Slice" => {
            let c = input(0)?;
            let (starts, ends, axes, steps) = slice_args(node, inputs, opset)?;
            let mut out = c.clone();
            for (k, &s) in starts.iter().enumerate() {
                let axis = norm_axis(axes.as_ref().map_or(k as i64, |a| a[k]), c.dims.len())?;
                let step = steps.as_ref().map_or(1, |s| s[k]);
                let index = slice_indices(out.dims[axis] as i64, s, ends[k], step)?;
                out = take(&out, axis, &index)?;
            }
            Ok(out)
        }
        "ConstantOfShape" => {
            let dims = input(0)?.as_i64("shape")?;
            let n = element_count(&dims)?;
            let value = attr(node, "value").and_then(|a| a.t.as_ref()).map(decode).transpose()?;
            let dims = dims.iter().map(|&d| d as usize).collect();
            let data = match value.map(|v| v.data) {
                Some(Data::I(v)) => Data::I(vec![v.first().copied().unwrap_or(0); n]),
                Some(Data::F(v)) => Data::F(vec![v.first().copied().unwrap_or(0.0); n]),
                None => Data::F(vec![0.0; n]),
            };
            Ok(Const { dims, data })
        }
        other => Err(FoldError::NotFoldable { op: other.to_string() }),
    }
}

type SliceArgs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);

/// Slice's starts, ends, axes, steps: attributes before opset 10, inputs after.
pub fn slice_args(node: &Node<'_>, inputs: &[Option<&Const>], opset: i64) -> Result<SliceArgs, FoldError> {
    let (starts, ends, axes, steps) = if opset < 10 {
        (attr_ints(node, "starts"), attr_ints(node, "ends"), attr_ints(node, "axes"), None)
    } else {
        let get = |i: usize| inputs.get(i).copied().flatten().map(|c| c.as_i64("Slice argument")).transpose();
        (get(1)?, get(2)?, get(3)?, get(4)?)
    };
    let starts = starts.ok_or(FoldError::Missing { op: "Slice", what: "starts" })?;
    let ends = ends.ok_or(FoldError::Missing { op: "Slice", what: "ends" })?;
    let n = starts.len();
    if ends.len() != n || axes.as_ref().is_some_and(|a| a.len() != n) || steps.as_ref().is_some_and(|s| s.len() != n) {
        return Err(FoldError::SliceLengths);
    }
    Ok((starts, ends, axes, steps))
}

/// The indices a Slice keeps along a dimension of `d` elements (ONNX clamping rules).
pub fn slice_indices(d: i64, start: i64, end: i64, step: i64) -> Result<Vec<usize>, FoldError> {
    if step == 0 {
        return Err(FoldError::SliceStep0);
    }
    let fix = |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(lo, hi);
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, e) = (fix(start, 0, d), fix(end, 0, d));
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let (mut i, e) = (fix(start, 0, d - 1), fix(end, -1, d - 1));
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_integer_division_follow_onnx() {
        let a = Const { dims: vec![2, 1], data: Data::I(vec![7, -7]) };
        let b = Const::ints(vec![2, 3]);
        let c = binary("Div", &a, &b).unwrap();
        assert_eq!(c.dims, vec![2, 2]);
        assert_eq!(c.data, Data::I(vec![3, 2, -3, -2]));
        assert_eq!(binary("Div", &a, &Const::ints(vec![0])), Err(FoldError::DivisionByZero));
    }

    #[test]
    fn slice_clamps_like_onnx() {
        assert_eq!(slice_indices(5, 1, i64::MAX, 1).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(slice_indices(5, -2, 100, 1).unwrap(), vec![3, 4]);
        assert_eq!(slice_indices(5, -1, i64::MIN, -2).unwrap(), vec![4, 2, 0]);
    }

    #[test]
    fn huge_declared_sizes_are_refused() {
        assert_eq!(element_count(&[1 << 20, 1 << 20]), Err(FoldError::TooLarge { dims: vec![1 << 20, 1 << 20] }));
        assert!(matches!(element_count(&[i64::MAX, i64::MAX]), Err(FoldError::TooLarge { .. })));
        assert_eq!(element_count(&[-1]), Err(FoldError::NegativeDimension(-1)));
        // The message names what is wrong.
        assert_eq!(element_count(&[-1]).unwrap_err().to_string(), "negative dimension -1");
    }
}
