// conv_common: the prelude of the convolution kernels (conv2d, conv2d_subgroup, conv2d_tiled,
// conv_transpose2d, conv_transpose2d_subgroup): the parameter struct, the override constants,
// the bindings they share and the helpers for padding, upsampling, the deferred norm, the
// dispatch grid, accumulation and stores.
// When one of those kernels is loaded it is joined, by plain concatenation, after a precision
// prelude (precision_f32.wgsl or precision_f16.wgsl: the stored type `st`, `st4` and its
// conversions) and before the kernel's own file (`Kernel::module_source`). It is valid WGSL
// after either precision prelude (tests/shaders.rs validates both joins). A kernel declares
// what differs: its weights binding, how it reads weights and norm coefficients, its entry
// points.
//
// Bindings (group 0) declared here:
//   0 params  uniform  ConvParams (sizes, padding, band window, element shifts)
//   1 input   storage  read        HWC st4 (4 channels), rows [in_row0, ...) of the input tensor
//   3 bias    storage  read        f32, out_c zero-padded to a whole number of blocks
//   4 output  storage  read_write  HWC st, rows [out_row0, out_row0 + band_rows)
//   5 norm_in storage  read        vec2 (a, b) per input channel (instance_norm_finalize's
//                                  coefficients), read as vec4s: [2g] = (a, b) of channels
//                                  4g, 4g+1; [2g+1] of 4g+2, 4g+3 (the previous layer's
//                                  instance norm, deferred; without NORM_IN any 16-byte buffer)
// (2 weights is the kernel's own.)
// Overrides:
//   K        kernel size (square)          STRIDE   stride
//   UPSAMPLE nearest-neighbour upsampling factor applied to the input first (1 = none)
//   REFLECT  reflection padding (true) or zero padding (false)
//   NORM_IN   apply the previous layer's norm as the input is loaded: x -> a * x + b, then
//             ReLU when NORM_RELU, only on real taps (SAME zero padding stays zero; reflected
//             and upsampled taps are real pixels and get it too)
//   IN3       the input has 3 channels, one group whose 4th channel is zero padding: mac16
//             skips its products (conv1 of the style networks: a quarter of its multiplies)
//   OUT3      a narrow block's 4th output channel is padding (3 output channels): mac4 skips
//             its products (conv4); the padding channel's sums stay zero, as with its zero
//             weights

struct ConvParams {
    in_w: u32, in_h: u32, in_c: u32, in_row0: u32,
    out_w: u32, out_h: u32, out_c: u32, out_row0: u32,
    band_rows: u32, in_shift: u32, out_shift: u32, oc_blocks: u32,
    pad_top: i32, pad_left: i32, stats_base: u32, tile_w: u32,
}

override K: u32 = 3u;
override STRIDE: u32 = 1u;
override UPSAMPLE: u32 = 1u;
override REFLECT: bool = false;
override NORM_IN: bool = false;
override NORM_RELU: bool = false;
override IN3: bool = false;
override OUT3: bool = false;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<st4>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<st>;
@group(0) @binding(5) var<storage, read> norm_in: array<vec4<f32>>;

// Per-channel affine map of one channel group of the input (identity without NORM_IN).
struct Norm { a: vec4<f32>, b: vec4<f32> }

// Maps a coordinate of the (upsampled, padded) input to a real input coordinate, or -1 when
// the tap falls on zero padding.
fn source(v: i32, real: u32) -> i32 {
    let n = i32(real * UPSAMPLE);
    var s = v;
    if (REFLECT) {
        if (s < 0) { s = -s; }
        if (s >= n) { s = 2 * (n - 1) - s; }
        s = clamp(s, 0, n - 1);
    } else if (s < 0 || s >= n) {
        return -1;
    }
    return s / i32(UPSAMPLE);
}

// Offset in vec4s (without the channel group) of the input pixel that output column `ox`
// reads at tap column `kx`, or -1 for padding or a column past the output's edge.
fn offset(ox: u32, kx: u32, row_base: i32) -> i32 {
    let ix = source(i32(ox * STRIDE + kx) - p.pad_left, p.in_w);
    return select(-1, row_base + ix * i32(p.in_c / 4u), ix >= 0 && ox < p.out_w && row_base >= 0);
}

// Offset in vec4s (without the channel group) of virtual input column `v` (output column times
// stride plus tap minus padding) in the row at `row_base`, or -1 for padding. Unlike `offset` it
// does not look at the output column, so a sliding window can read the taps right of a row's
// last output pixel; every column it returns is inside the input.
fn col(v: i32, row_base: i32) -> i32 {
    let ix = source(v, p.in_w);
    return select(-1, row_base + ix * i32(p.in_c / 4u), ix >= 0 && row_base >= 0);
}

// Channels [4 * g, 4 * g + 4) of the pixel at offset `o`, zero for padding.
// With NORM_IN, the normalised (and rectified) value: padding taps stay zero.
fn ld(o: i32, g: u32, n: Norm) -> vec4<f32> {
    var v = from_st4(input[max(o, 0) + i32(g)]);
    if (NORM_IN) {
        v = n.a * v + n.b;
        if (NORM_RELU) {
            v = max(v, vec4<f32>(0.0));
        }
    }
    return select(vec4<f32>(0.0), v, o >= 0);
}

// Input row offset (vec4s) for output row `oy` at tap row `ky`, or -1 for padding.
fn row_base(oy: u32, ky: u32) -> i32 {
    let iy = source(i32(oy * STRIDE + ky) - p.pad_top, p.in_h);
    if (iy < 0 || oy >= p.out_row0 + p.band_rows) {
        return -1;
    }
    return i32(p.in_shift / 4u) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u);
}

// a += sum over the 4 input channels of x of (weights of that channel) * x[c].
// With IN3 the 4th channel (zero padding) is skipped: the same sums, a quarter fewer products.
fn mac16(a: ptr<function, mat4x4<f32>>, w0: mat4x4<f32>, w1: mat4x4<f32>, w2: mat4x4<f32>, w3: mat4x4<f32>, x: vec4<f32>) {
    var s = w0 * x.x + w1 * x.y + w2 * x.z;
    if (!IN3) {
        s += w3 * x.w;
    }
    *a += s;
}

// (pixel group, band row, oc block) of an invocation. A workgroup is a tile of tw x (64 / tw)
// invocations, tw = p.tile_w (1, 2, 4 or 8): square-ish tiles reuse input rows across
// neighbouring output rows; the plan picks the tw that leaves the fewest idle lanes past the
// right edge (a 20-group row in tiles 8 wide ran 24 groups, a sixth of them idle) and prefers
// the widest on a tie (`tile_width` in conv.rs). A parameter, not an override constant, so one
// pipeline serves every frame size.
fn grid(wid: vec3<u32>, li: u32) -> vec3<u32> {
    let tw = p.tile_w;
    return vec3<u32>(wid.x * tw + li % tw, wid.y * (64u / tw) + li / tw, wid.z);
}

// Writes channels [oc0, oc0 + 4) of output pixel `ox` of band row `band_row`.
fn store4(band_row: u32, ox: u32, oc0: u32, v: vec4<f32>) {
    if (ox >= p.out_w) {
        return;
    }
    let base = p.out_shift + (band_row * p.out_w + ox) * p.out_c + oc0;
    for (var c = 0u; c < 4u; c++) {
        if (oc0 + c < p.out_c) {
            output[base + c] = to_st(v[c]);
        }
    }
}

fn store16(band_row: u32, ox: u32, ocb: u32, a: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store4(band_row, ox, ocb * 16u + j * 4u, a[j] + bias[ocb * 4u + j]);
    }
}

// Narrow accumulators: column c of a<q> is output pixel 4q + c (4 channels). `w` holds the
// weights of the 4 output channels (columns: input channels 4g..4g+3), so w * x is one pixel.
fn mac4(a: ptr<function, mat4x4<f32>>, w: mat4x4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
    if (OUT3) {
        // The 3 real output channels only (the 4th row of w is padding).
        let w3 = mat4x3<f32>(w[0].xyz, w[1].xyz, w[2].xyz, w[3].xyz);
        *a += mat4x4<f32>(vec4<f32>(w3 * x0, 0.0), vec4<f32>(w3 * x1, 0.0), vec4<f32>(w3 * x2, 0.0), vec4<f32>(w3 * x3, 0.0));
    } else {
        *a += mat4x4<f32>(w * x0, w * x1, w * x2, w * x3);
    }
}

fn store_narrow(band_row: u32, ox: u32, ocb: u32, a: mat4x4<f32>) {
    let b = bias[ocb];
    for (var c = 0u; c < 4u; c++) {
        store4(band_row, ox + c, ocb * 4u, a[c] + b);
    }
}

// Loads channel group g of the 4 pixels starting at output column ox and accumulates them.
fn step4(a: ptr<function, mat4x4<f32>>, w: mat4x4<f32>, ox: u32, kx: u32, rb: i32, g: u32, n: Norm) {
    mac4(a, w, ld(offset(ox, kx, rb), g, n), ld(offset(ox + 1u, kx, rb), g, n),
         ld(offset(ox + 2u, kx, rb), g, n), ld(offset(ox + 3u, kx, rb), g, n));
}
