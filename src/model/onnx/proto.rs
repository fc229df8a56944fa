//! A small, bounds-checked decoder of the protobuf wire format for the ONNX messages the importer
//! reads (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
//!
//! Hostile input is expected: every length is checked against the bytes that remain before
//! anything is allocated, so memory stays proportional to the file's size; packed arrays are
//! counted from their byte length; nesting is fixed by the message types read here (subgraphs,
//! sequence and map types are skipped, never descended into), so there is no unbounded
//! recursion. Unknown fields are skipped, as protobuf requires. Field numbers follow
//! `onnx/onnx.proto3`.

use super::OnnxError;

/// ONNX `TensorProto.DataType` values the importer understands.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const DOUBLE: i32 = 11;
}

#[derive(Debug, Default, Clone)]
pub struct Model<'a> {
    pub ir_version: i64,
    pub producer_name: String,
    /// (domain, version); the default domain is "" or "ai.onnx".
    pub opset_import: Vec<(String, i64)>,
    pub graph: Option<Graph<'a>>,
}

#[derive(Debug, Default, Clone)]
pub struct Graph<'a> {
    pub name: String,
    pub nodes: Vec<Node<'a>>,
    pub initializers: Vec<Tensor<'a>>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

#[derive(Debug, Default, Clone)]
pub struct Node<'a> {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub attributes: Vec<Attribute<'a>>,
}

#[derive(Debug, Default, Clone)]
pub struct Attribute<'a> {
    pub name: String,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<Vec<u8>>,
    pub t: Option<Tensor<'a>>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    /// Set when the attribute holds a graph (If, Loop, Scan): never parsed.
    pub has_graph: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Tensor<'a> {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i32>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub raw_data: Option<&'a [u8]>,
    /// `data_location = EXTERNAL`: the values live in another file (refused).
    pub external: bool,
}

/// A graph input or output: name, element type and dimensions (`None`: symbolic or unknown).
#[derive(Debug, Default, Clone)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    pub dims: Option<Vec<Option<i64>>>,
}

/// One field of a message: its number and value.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Cursor over one message's bytes. `base` is the message's offset in the file, for errors.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Protobuf { offset: self.base + self.pos, reason: reason.into() }
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        if n > self.buf.len() - self.pos {
            return Err(self.err(format!("field declares {n} bytes but only {} remain", self.buf.len() - self.pos)));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next field, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u32, Value<'a>, usize)>, OnnxError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u32::MAX as u64 >> 3 {
            return Err(self.err(format!("invalid field number {number}")));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| self.err("fixed64"))?)),
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| self.err("length does not fit in memory"))?;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| self.err("fixed32"))?)),
            w => return Err(self.err(format!("unsupported wire type {w} (field {number})"))),
        };
        let start = self.base + self.pos;
        Ok(Some((number as u32, value, start)))
    }
}

fn string(v: &Value<'_>, at: usize) -> Result<String, OnnxError> {
    match v {
        Value::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| OnnxError::Protobuf { offset: at, reason: "string field is not UTF-8".into() }),
        _ => Err(wire(at, "a string")),
    }
}

fn wire(at: usize, what: &str) -> OnnxError {
    OnnxError::Protobuf { offset: at, reason: format!("wrong wire type for {what}") }
}

fn int(v: &Value<'_>, at: usize) -> Result<i64, OnnxError> {
    match v {
        Value::Varint(x) => Ok(*x as i64),
        _ => Err(wire(at, "an integer")),
    }
}

/// Sub-message bytes with their offset in the file.
fn message<'a>(v: &Value<'a>, at: usize) -> Result<(&'a [u8], usize), OnnxError> {
    match v {
        Value::Bytes(b) => Ok((b, at - b.len())),
        _ => Err(wire(at, "a message")),
    }
}

/// Appends a repeated varint field, packed (one length-delimited run) or not.
fn push_varints(out: &mut Vec<i64>, v: &Value<'_>, at: usize) -> Result<(), OnnxError> {
    match v {
        Value::Varint(x) => out.push(*x as i64),
        Value::Bytes(b) => {
            let mut r = Reader::new(b, at - b.len());
            // At most one value per byte: the reservation is bounded by the field's size.
            out.reserve(b.len().min(1 << 20));
            while r.pos < b.len() {
                out.push(r.varint()? as i64);
            }
        }
        _ => return Err(wire(at, "a repeated integer")),
    }
    Ok(())
}

fn push_f32(out: &mut Vec<f32>, v: &Value<'_>, at: usize) -> Result<(), OnnxError> {
    match v {
        Value::Fixed32(x) => out.push(f32::from_bits(*x)),
        Value::Bytes(b) if b.len() % 4 == 0 => {
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        _ => return Err(wire(at, "a repeated float")),
    }
    Ok(())
}

fn push_f64(out: &mut Vec<f64>, v: &Value<'_>, at: usize) -> Result<(), OnnxError> {
    match v {
        Value::Fixed64(x) => out.push(f64::from_bits(*x)),
        Value::Bytes(b) if b.len() % 8 == 0 => {
            out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])))
        }
        _ => return Err(wire(at, "a repeated double")),
    }
    Ok(())
}

/// Parses a whole `.onnx` file.
pub fn parse_model(bytes: &[u8]) -> Result<Model<'_>, OnnxError> {
    let mut m = Model::default();
    let mut r = Reader::new(bytes, 0);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => m.ir_version = int(&v, at)?,
            2 => m.producer_name = string(&v, at)?,
            7 => {
                let (b, base) = message(&v, at)?;
                m.graph = Some(parse_graph(b, base)?);
            }
            8 => {
                let (b, base) = message(&v, at)?;
                let mut r = Reader::new(b, base);
                let (mut domain, mut version) = (String::new(), 0);
                while let Some((n, v, at)) = r.field()? {
                    match n {
                        1 => domain = string(&v, at)?,
                        2 => version = int(&v, at)?,
                        _ => {}
                    }
                }
                m.opset_import.push((domain, version));
            }
            _ => {}
        }
    }
    Ok(m)
}

fn parse_graph(bytes: &[u8], base: usize) -> Result<Graph<'_>, OnnxError> {
    let mut g = Graph::default();
    let mut r = Reader::new(bytes, base);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => {
                let (b, base) = message(&v, at)?;
                g.nodes.push(parse_node(b, base)?);
            }
            2 => g.name = string(&v, at)?,
            5 => {
                let (b, base) = message(&v, at)?;
                g.initializers.push(parse_tensor(b, base)?);
            }
            11 | 12 => {
                let (b, base) = message(&v, at)?;
                let vi = parse_value_info(b, base)?;
                if n == 11 {
                    g.inputs.push(vi)
                } else {
                    g.outputs.push(vi)
                }
            }
            15 => {
                return Err(OnnxError::Protobuf { offset: at, reason: "sparse initializers are not supported".into() })
            }
            _ => {}
        }
    }
    Ok(g)
}

fn parse_node(bytes: &[u8], base: usize) -> Result<Node<'_>, OnnxError> {
    let mut node = Node::default();
    let mut r = Reader::new(bytes, base);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => node.inputs.push(string(&v, at)?),
            2 => node.outputs.push(string(&v, at)?),
            3 => node.name = string(&v, at)?,
            4 => node.op_type = string(&v, at)?,
            5 => {
                let (b, base) = message(&v, at)?;
                node.attributes.push(parse_attribute(b, base)?);
            }
            7 => node.domain = string(&v, at)?,
            _ => {}
        }
    }
    Ok(node)
}

fn parse_attribute(bytes: &[u8], base: usize) -> Result<Attribute<'_>, OnnxError> {
    let mut a = Attribute::default();
    let mut r = Reader::new(bytes, base);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => a.name = string(&v, at)?,
            2 => match v {
                Value::Fixed32(x) => a.f = Some(f32::from_bits(x)),
                _ => return Err(wire(at, "a float attribute")),
            },
            3 => a.i = Some(int(&v, at)?),
            4 => a.s = Some(message(&v, at)?.0.to_vec()),
            5 => {
                let (b, base) = message(&v, at)?;
                a.t = Some(parse_tensor(b, base)?);
            }
            6 | 11 => a.has_graph = true,
            7 => push_f32(&mut a.floats, &v, at)?,
            8 => push_varints(&mut a.ints, &v, at)?,
            _ => {}
        }
    }
    Ok(a)
}

fn parse_tensor(bytes: &[u8], base: usize) -> Result<Tensor<'_>, OnnxError> {
    let mut t = Tensor::default();
    let mut r = Reader::new(bytes, base);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => push_varints(&mut t.dims, &v, at)?,
            2 => t.data_type = int(&v, at)? as i32,
            4 => push_f32(&mut t.float_data, &v, at)?,
            5 => {
                let mut tmp = Vec::new();
                push_varints(&mut tmp, &v, at)?;
                t.int32_data.extend(tmp.iter().map(|&x| x as i32));
            }
            7 => push_varints(&mut t.int64_data, &v, at)?,
            8 => t.name = string(&v, at)?,
            9 => t.raw_data = Some(message(&v, at)?.0),
            10 => push_f64(&mut t.double_data, &v, at)?,
            13 => t.external = true,
            14 => t.external |= int(&v, at)? == 1,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_value_info(bytes: &[u8], base: usize) -> Result<ValueInfo, OnnxError> {
    let mut vi = ValueInfo::default();
    let mut r = Reader::new(bytes, base);
    while let Some((n, v, at)) = r.field()? {
        match n {
            1 => vi.name = string(&v, at)?,
            2 => {
                // TypeProto: only tensor_type (1) is read; sequence/map types are skipped.
                let (b, base) = message(&v, at)?;
                let mut r = Reader::new(b, base);
                while let Some((n, v, at)) = r.field()? {
                    if n != 1 {
                        continue;
                    }
                    let (b, base) = message(&v, at)?;
                    let mut r = Reader::new(b, base);
                    while let Some((n, v, at)) = r.field()? {
                        match n {
                            1 => vi.elem_type = int(&v, at)? as i32,
                            2 => vi.dims = Some(parse_shape(message(&v, at)?.0, at)?),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}

fn parse_shape(bytes: &[u8], base: usize) -> Result<Vec<Option<i64>>, OnnxError> {
    let mut dims = Vec::new();
    let mut r = Reader::new(bytes, base - bytes.len());
    while let Some((n, v, at)) = r.field()? {
        if n != 1 {
            continue;
        }
        let (b, base) = message(&v, at)?;
        let mut r = Reader::new(b, base);
        let mut d = None;
        while let Some((n, v, at)) = r.field()? {
            if n == 1 {
                d = Some(int(&v, at)?);
            }
        }
        dims.push(d);
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lengths_and_varints_are_errors() {
        // Field 7 (graph), length 2^62: refused before any allocation.
        let e = parse_model(&[0x3a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]).unwrap_err();
        assert!(e.to_string().contains("remain"), "{e}");
        let e = parse_model(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert!(e.to_string().contains("varint"), "{e}");
        let e = parse_model(&[0x08]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(parse_model(&[0x0b]).is_err()); // wire type 3 (group)
        assert!(parse_model(&[]).unwrap().graph.is_none());
    }

    #[test]
    fn packed_and_unpacked_repeated_fields_read_the_same() {
        // TensorProto dims packed [2, 3] vs unpacked 2, 3.
        let packed = parse_tensor(&[0x0a, 0x02, 0x02, 0x03], 0).unwrap();
        let unpacked = parse_tensor(&[0x08, 0x02, 0x08, 0x03], 0).unwrap();
        assert_eq!(packed.dims, vec![2, 3]);
        assert_eq!(unpacked.dims, vec![2, 3]);
    }
}
