// conv_transpose2d: TensorFlow conv2d_transpose with stride 2 and 'SAME' output size (2H x 2W)
// over an HWC f32 activation, register blocked, written as a gather:
//   y[r, s, o] = sum over (dy, dx, c) with r = 2i + dy, s = 2j + dx of x[i, j, c] * w[c, o, dy, dx]
// Each invocation computes 16 output channels for 8 output pixels of one row that share a
// column parity, so the taps that reach them are known per invocation and the rest skipped.
//
// Bindings (group 0): as conv2d.wgsl
//   0 params  uniform  ConvParams     1 input   storage read   HWC f32 as vec4 (band window)
//   2 weights storage  read [oc_block][ky][kx][ic][16]          3 bias storage read
//   4 output  storage  read_write HWC f32 (band window)
// Overrides: K (kernel size).
// Dispatch: workgroups (ceil(groups / tw), ceil(band_rows / th), 2 * oc_blocks) with groups =
//   ceil(ceil(out_w / 2) / 8), tw = min(8, groups), th = 64 / tw; z = 2 * oc_block + parity.

struct ConvParams {
    in_w: u32, in_h: u32, in_c: u32, in_row0: u32,
    out_w: u32, out_h: u32, out_c: u32, out_row0: u32,
    band_rows: u32, in_shift: u32, out_shift: u32, oc_blocks: u32,
    pad_top: i32, pad_left: i32, stats_base: u32, _pad1: u32,
}

override K: u32 = 3u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Offset (vec4s) of the input pixel that output column `s` reads at tap column `kx`, or -1.
fn offset(s: u32, kx: u32, row_base: i32) -> i32 {
    let d = i32(s) - i32(kx);
    let ix = d / 2;
    return select(-1, row_base + ix * i32(p.in_c / 4u), d >= 0 && ix < i32(p.in_w) && s < p.out_w);
}

fn ld(o: i32, g: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), input[max(o, 0) + i32(g)], o >= 0);
}

fn w16(i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(weights[i], weights[i + 1u], weights[i + 2u], weights[i + 3u]);
}

fn mac16(a: ptr<function, mat4x4<f32>>, w0: mat4x4<f32>, w1: mat4x4<f32>, w2: mat4x4<f32>, w3: mat4x4<f32>, x: vec4<f32>) {
    *a += w0 * x.x + w1 * x.y + w2 * x.z + w3 * x.w;
}

fn store16(band_row: u32, ox: u32, ocb: u32, a: mat4x4<f32>) {
    if (ox >= p.out_w) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let oc0 = ocb * 16u + j * 4u;
        let v = a[j] + bias[ocb * 4u + j];
        let base = p.out_shift + (band_row * p.out_w + ox) * p.out_c + oc0;
        for (var c = 0u; c < 4u; c++) {
            if (oc0 + c < p.out_c) {
                output[base + c] = v[c];
            }
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // Tiles of tw x th invocations as in conv2d.wgsl's `grid`.
    let groups = ((p.out_w + 1u) / 2u + 7u) / 8u;
    let tw = min(8u, groups);
    let th = 64u / tw;
    let row = select(0xffffffu, wid.y * th + li / tw, li < tw * th);
    let gid = vec3<u32>(wid.x * tw + li % tw, row, wid.z);
    let band_row = gid.y;
    let ocb = gid.z / 2u;
    let phx = gid.z % 2u;
    // Output columns of this invocation: 2 * (j0 + q) + phx for q in 0..8.
    let j0 = gid.x * 8u;
    let s0 = 2u * j0 + phx;
    if (s0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    let tap = p.in_c * 4u;
    for (var ky = 0u; ky < K; ky++) {
        let dyr = i32(oy) - i32(ky);
        if (dyr < 0 || (dyr % 2) != 0 || dyr / 2 >= i32(p.in_h)) {
            continue;
        }
        let rb = i32(p.in_shift / 4u) + (dyr / 2 - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u);
        for (var kx = 0u; kx < K; kx++) {
            if (((phx + kx) % 2u) != 0u) {
                continue;
            }
            let o0 = offset(s0, kx, rb); let o1 = offset(s0 + 2u, kx, rb);
            let o2 = offset(s0 + 4u, kx, rb); let o3 = offset(s0 + 6u, kx, rb);
            let o4 = offset(s0 + 8u, kx, rb); let o5 = offset(s0 + 10u, kx, rb);
            let o6 = offset(s0 + 12u, kx, rb); let o7 = offset(s0 + 14u, kx, rb);
            var wi = ((ocb * K + ky) * K + kx) * tap;
            for (var g = 0u; g < p.in_c / 4u; g++) {
                let w0 = w16(wi); let w1 = w16(wi + 4u); let w2 = w16(wi + 8u); let w3 = w16(wi + 12u);
                wi += 16u;
                mac16(&a0, w0, w1, w2, w3, ld(o0, g)); mac16(&a1, w0, w1, w2, w3, ld(o1, g));
                mac16(&a2, w0, w1, w2, w3, ld(o2, g)); mac16(&a3, w0, w1, w2, w3, ld(o3, g));
                mac16(&a4, w0, w1, w2, w3, ld(o4, g)); mac16(&a5, w0, w1, w2, w3, ld(o5, g));
                mac16(&a6, w0, w1, w2, w3, ld(o6, g)); mac16(&a7, w0, w1, w2, w3, ld(o7, g));
            }
        }
    }
    store16(band_row, s0, ocb, a0); store16(band_row, s0 + 2u, ocb, a1);
    store16(band_row, s0 + 4u, ocb, a2); store16(band_row, s0 + 6u, ocb, a3);
    store16(band_row, s0 + 8u, ocb, a4); store16(band_row, s0 + 10u, ocb, a5);
    store16(band_row, s0 + 12u, ocb, a6); store16(band_row, s0 + 14u, ocb, a7);
}
