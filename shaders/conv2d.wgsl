// conv2d: 2-D convolution (cross-correlation) over an HWC f32 activation, register blocked.
// Optional nearest-neighbour upsampling of the input first, zero or reflection padding.
//
// Two entry points, chosen by the number of output channels:
//   main         16 output channels x 8 consecutive output pixels per invocation
//                (accumulator a<p> holds pixel p, its columns are 4 groups of 4 channels)
//   main_narrow   4 output channels x 32 consecutive output pixels per invocation, for layers
//                with few output channels such as the final 32 -> 3 layer
//                (accumulator a<q> column c holds pixel 4q + c, 4 channels)
// Accumulators are named variables, not arrays: lavapipe spills indexed private arrays to memory.
//
// Bindings (group 0):
//   0 params  uniform  ConvParams (sizes, padding, band window, element shifts)
//   1 input   storage  read        HWC f32, rows [in_row0, ...) of the input tensor
//   2 weights storage  read        vec4 blocks [oc_block][ky][kx][ic][OCB] with OCB = 16 (main)
//                                  or 4 (main_narrow) channels (see model::gpu::weights)
//   3 bias    storage  read        out_c zero-padded to a whole number of blocks
//   4 output  storage  read_write  HWC f32, rows [out_row0, out_row0 + band_rows)
// Overrides:
//   K        kernel size (square)          STRIDE   stride
//   UPSAMPLE nearest-neighbour upsampling factor applied to the input first (1 = none)
//   REFLECT  reflection padding (true) or zero padding (false)
// Dispatch: workgroups (ceil(ceil(out_w / pixels per invocation) / 8), ceil(band_rows / 8), oc_blocks).

struct ConvParams {
    in_w: u32, in_h: u32, in_c: u32, in_row0: u32,
    out_w: u32, out_h: u32, out_c: u32, out_row0: u32,
    band_rows: u32, in_shift: u32, out_shift: u32, oc_blocks: u32,
    pad_top: i32, pad_left: i32, _pad0: u32, _pad1: u32,
}

override K: u32 = 3u;
override STRIDE: u32 = 1u;
override UPSAMPLE: u32 = 1u;
override REFLECT: bool = false;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

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

// Element offset (without the channel) of the input pixel that output column `ox` reads at
// tap column `kx`, or -1 for padding or a column past the output's edge.
fn offset(ox: u32, kx: u32, row_base: i32) -> i32 {
    let ix = source(i32(ox * STRIDE + kx) - p.pad_left, p.in_w);
    return select(-1, row_base + ix * i32(p.in_c), ix >= 0 && ox < p.out_w);
}

fn ld(o: i32, ic: u32) -> f32 {
    return select(0.0, input[max(o, 0) + i32(ic)], o >= 0);
}

fn ld4(o: vec4<i32>, ic: u32) -> vec4<f32> {
    return vec4<f32>(ld(o.x, ic), ld(o.y, ic), ld(o.z, ic), ld(o.w, ic));
}

// a += w (4 channels) outer x (4 pixels): column c is pixel c.
fn outer(w: vec4<f32>, x: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(w * x.x, w * x.y, w * x.z, w * x.w);
}

// Input row offset for output row `oy` at tap row `ky`, or -1 for padding.
fn row_base(oy: u32, ky: u32) -> i32 {
    let iy = source(i32(oy * STRIDE + ky) - p.pad_top, p.in_h);
    if (iy < 0) {
        return -1;
    }
    return i32(p.in_shift) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c);
}

// Writes channels [oc0, oc0 + 4) of output pixel `ox` of band row `band_row`.
fn store4(band_row: u32, ox: u32, oc0: u32, v: vec4<f32>) {
    if (ox >= p.out_w) {
        return;
    }
    let base = p.out_shift + (band_row * p.out_w + ox) * p.out_c + oc0;
    for (var c = 0u; c < 4u; c++) {
        if (oc0 + c < p.out_c) {
            output[base + c] = v[c];
        }
    }
}

fn store16(band_row: u32, ox: u32, ocb: u32, a: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store4(band_row, ox, ocb * 16u + j * 4u, a[j] + bias[ocb * 4u + j]);
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox0 = gid.x * 8u;
    let band_row = gid.y;
    let ocb = gid.z;
    if (ox0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    let tap = p.in_c * 4u;
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        if (rb < 0) {
            continue;
        }
        for (var kx = 0u; kx < K; kx++) {
            let o0 = offset(ox0, kx, rb); let o1 = offset(ox0 + 1u, kx, rb);
            let o2 = offset(ox0 + 2u, kx, rb); let o3 = offset(ox0 + 3u, kx, rb);
            let o4 = offset(ox0 + 4u, kx, rb); let o5 = offset(ox0 + 5u, kx, rb);
            let o6 = offset(ox0 + 6u, kx, rb); let o7 = offset(ox0 + 7u, kx, rb);
            var wi = ((ocb * K + ky) * K + kx) * tap;
            for (var ic = 0u; ic < p.in_c; ic++) {
                let w = mat4x4<f32>(weights[wi], weights[wi + 1u], weights[wi + 2u], weights[wi + 3u]);
                wi += 4u;
                a0 += w * ld(o0, ic); a1 += w * ld(o1, ic); a2 += w * ld(o2, ic); a3 += w * ld(o3, ic);
                a4 += w * ld(o4, ic); a5 += w * ld(o5, ic); a6 += w * ld(o6, ic); a7 += w * ld(o7, ic);
            }
        }
    }
    store16(band_row, ox0, ocb, a0); store16(band_row, ox0 + 1u, ocb, a1);
    store16(band_row, ox0 + 2u, ocb, a2); store16(band_row, ox0 + 3u, ocb, a3);
    store16(band_row, ox0 + 4u, ocb, a4); store16(band_row, ox0 + 5u, ocb, a5);
    store16(band_row, ox0 + 6u, ocb, a6); store16(band_row, ox0 + 7u, ocb, a7);
}

fn offsets4(ox: u32, kx: u32, rb: i32) -> vec4<i32> {
    return vec4<i32>(offset(ox, kx, rb), offset(ox + 1u, kx, rb), offset(ox + 2u, kx, rb), offset(ox + 3u, kx, rb));
}

fn store_narrow(band_row: u32, ox: u32, ocb: u32, a: mat4x4<f32>) {
    let b = bias[ocb];
    for (var c = 0u; c < 4u; c++) {
        store4(band_row, ox + c, ocb * 4u, a[c] + b);
    }
}

@compute @workgroup_size(8, 8, 1)
fn main_narrow(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox0 = gid.x * 32u;
    let band_row = gid.y;
    let ocb = gid.z;
    if (ox0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        if (rb < 0) {
            continue;
        }
        for (var kx = 0u; kx < K; kx++) {
            let o0 = offsets4(ox0, kx, rb); let o1 = offsets4(ox0 + 4u, kx, rb);
            let o2 = offsets4(ox0 + 8u, kx, rb); let o3 = offsets4(ox0 + 12u, kx, rb);
            let o4 = offsets4(ox0 + 16u, kx, rb); let o5 = offsets4(ox0 + 20u, kx, rb);
            let o6 = offsets4(ox0 + 24u, kx, rb); let o7 = offsets4(ox0 + 28u, kx, rb);
            var wi = ((ocb * K + ky) * K + kx) * p.in_c;
            for (var ic = 0u; ic < p.in_c; ic++) {
                let w = weights[wi];
                wi += 1u;
                a0 += outer(w, ld4(o0, ic)); a1 += outer(w, ld4(o1, ic));
                a2 += outer(w, ld4(o2, ic)); a3 += outer(w, ld4(o3, ic));
                a4 += outer(w, ld4(o4, ic)); a5 += outer(w, ld4(o5, ic));
                a6 += outer(w, ld4(o6, ic)); a7 += outer(w, ld4(o7, ic));
            }
        }
    }
    store_narrow(band_row, ox0, ocb, a0); store_narrow(band_row, ox0 + 4u, ocb, a1);
    store_narrow(band_row, ox0 + 8u, ocb, a2); store_narrow(band_row, ox0 + 12u, ocb, a3);
    store_narrow(band_row, ox0 + 16u, ocb, a4); store_narrow(band_row, ox0 + 20u, ocb, a5);
    store_narrow(band_row, ox0 + 24u, ocb, a6); store_narrow(band_row, ox0 + 28u, ocb, a7);
}
