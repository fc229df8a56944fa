// conv2d_tiled: 2-D convolution as an implicit GEMM with workgroup-memory tiles, for the
// K x K layers whose input channels come in multiples of 16 (the 3x3 layers of the network).
//
// GEMM view: M = output pixels of the band (band_rows x out_w), N = output channels,
// depth = K x K taps x in_c. A workgroup of TM * TN / 16 invocations computes a TM-pixel x
// TN-channel tile (override constants, multiples of 16, TM <= 128 and TN <= 64 (the workgroup
// arrays below); 64 x 64 by default, 256 invocations); each invocation 4 pixels x 4 channels (one mat4x4 accumulator: column = pixel).
// The depth is walked in steps of 16 input channels of one tap: the workgroup loads the step's
// input (4 TM vec4s: 4 channels of one pixel each, with padding, upsampling and the deferred
// norm applied as in conv2d) and weights (4 TN vec4s: 4 output channels of one input channel
// each) into workgroup memory, each invocation every (TM * TN / 16)-th vec4, and accumulates
// 4 mat4x4 x vec4 products from vec4 reads of the tiles. The tiles are double-buffered: step
// s + 1 is loaded into the other buffer while step s is computed, so each step costs one
// barrier. Each input value is reused by TN channels and each weight by TM pixels. Suited to
// GPUs (on lavapipe, where workgroup memory and barriers are slow, the register-blocked
// kernels win; `select` times both). Workgroup memory: 24 KiB, the arrays for the largest
// tile (select.rs TILED_WORKGROUP_BYTES; a variant is offered only where the adapter has it).
//
// Bindings, overrides and the output are those of conv2d (the prelude conv_common.wgsl, joined
// before this file at load time, declares them; this file adds the weights, st4 blocked as
// [oc_block][ky][kx][ic][16]), so the plan binds it as it binds conv2d. in_c must be a multiple
// of 16. Inputs and weights are converted from `st` (the precision prelude) as they are loaded
// into the tiles, which stay f32.
// Overrides: TM, TN (tile size), besides conv2d's.
// Dispatch: workgroups (x, ceil(out_c / TN), z) with x * z >= ceil(band_rows * out_w / TM);
// pixel tile t = wid.z * num_workgroups.x + wid.x.

@group(0) @binding(2) var<storage, read> weights: array<st4>;

override TM: u32 = 64u; // pixels per tile
override TN: u32 = 64u; // output channels per tile
const TK: u32 = 16u; // input channels per depth step

// Two buffers of each tile, sized for TM = 128 and TN = 64 (naga 30 cannot size workgroup arrays
// by override constants). Input: [buffer][pixel m][group q] = channels 4q..4q+3 of the step for
// pixel m (buffer stride TM * 4). Weights: [buffer][input channel k][group j] = output channels
// 4j..4j+3 of the tile (buffer stride TK * TN / 4).
var<workgroup> tile_x: array<vec4<f32>, 1024>;
var<workgroup> tile_w: array<vec4<f32>, 512>;

// Offset in vec4s (channel group 0) of the input pixel that output pixel (oy, ox) reads at tap
// (ky, kx), or -1 for padding.
fn tap_offset(oy: u32, ox: u32, ky: u32, kx: u32) -> i32 {
    let iy = source(i32(oy * STRIDE + ky) - p.pad_top, p.in_h);
    let ix = source(i32(ox * STRIDE + kx) - p.pad_left, p.in_w);
    if (iy < 0 || ix < 0) {
        return -1;
    }
    let row = i32(p.in_shift / 4u) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u);
    return row + ix * i32(p.in_c / 4u);
}

// Channels [4g, 4g + 4) at offset o (zero for padding), normalised when NORM_IN.
fn load_x(o: i32, g: u32) -> vec4<f32> {
    if (o < 0) {
        return vec4<f32>(0.0);
    }
    var v = from_st4(input[o + i32(g)]);
    if (NORM_IN) {
        let lo = norm_in[2u * g];
        let hi = norm_in[2u * g + 1u];
        v = vec4<f32>(lo.xz, hi.xz) * v + vec4<f32>(lo.yw, hi.yw);
        if (NORM_RELU) {
            v = max(v, vec4<f32>(0.0));
        }
    }
    return v;
}

@compute @workgroup_size(TM * TN / 16u, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let pixels = p.band_rows * p.out_w;
    let m_base = (wid.z * nwg.x + wid.x) * TM;
    let n_base = wid.y * TN;
    // Uniform per workgroup: a whole tile past the end returns before any barrier.
    if (m_base >= pixels) {
        return;
    }

    // What this invocation computes: pixels 4 tm .. 4 tm + 3, channels 4 tn .. 4 tn + 3.
    let tm = li % (TM / 4u);
    let tn = li / (TM / 4u);
    var acc = mat4x4<f32>();

    let chunks = p.in_c / TK;
    let steps = K * K * chunks;
    load_step(0u, 0u, li, m_base, n_base, pixels);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let cur_x = (s % 2u) * TM * 4u;
        let cur_w = (s % 2u) * TK * (TN / 4u);
        if (s + 1u < steps) {
            load_step(s + 1u, (s + 1u) % 2u, li, m_base, n_base, pixels);
        }
        for (var q = 0u; q < 4u; q++) {
            // Input channels 4q..4q+3 of the step: their weights for the 4 output channels as
            // the columns of w, and each pixel's 4 values.
            let w = mat4x4<f32>(
                tile_w[cur_w + (4u * q) * (TN / 4u) + tn],
                tile_w[cur_w + (4u * q + 1u) * (TN / 4u) + tn],
                tile_w[cur_w + (4u * q + 2u) * (TN / 4u) + tn],
                tile_w[cur_w + (4u * q + 3u) * (TN / 4u) + tn],
            );
            acc[0] += w * tile_x[cur_x + (4u * tm) * 4u + q];
            acc[1] += w * tile_x[cur_x + (4u * tm + 1u) * 4u + q];
            acc[2] += w * tile_x[cur_x + (4u * tm + 2u) * 4u + q];
            acc[3] += w * tile_x[cur_x + (4u * tm + 3u) * 4u + q];
        }
        workgroupBarrier();
    }

    let oc0 = n_base + tn * 4u;
    if (oc0 >= p.out_c) {
        return;
    }
    let bv = bias[oc0 / 4u];
    for (var i = 0u; i < 4u; i++) {
        let q = m_base + tm * 4u + i;
        if (q >= pixels) {
            break;
        }
        let base = p.out_shift + q * p.out_c + oc0;
        let v = acc[i] + bv;
        for (var c = 0u; c < 4u; c++) {
            if (oc0 + c < p.out_c) {
                output[base + c] = to_st(v[c]);
            }
        }
    }
}

// Loads depth step `s` (tap (ky, kx), input channels c0..c0+15) into buffer `buf` (0 or 1):
// invocation li takes every (TM * TN / 16)-th vec4 of the input tile (pixel lm, channel group
// lg) and of the weight tile (input channel wk, output channels 4 wq .. 4 wq + 3).
fn load_step(s: u32, buf: u32, li: u32, m_base: u32, n_base: u32, pixels: u32) {
    let invocations = TM * TN / 16u;
    let chunks = p.in_c / TK;
    let tap = s / chunks;
    let c0 = (s % chunks) * TK;
    let ky = tap / K;
    let kx = tap % K;
    for (var i = li; i < TM * 4u; i += invocations) {
        let lm = i / 4u;
        let lg = i % 4u;
        let pm = m_base + lm;
        let in_band = pm < pixels;
        let oy = p.out_row0 + select(0u, pm / p.out_w, in_band);
        let ox = select(0u, pm % p.out_w, in_band);
        let o = select(-1, tap_offset(oy, ox, ky, kx), in_band);
        tile_x[buf * TM * 4u + i] = load_x(o, c0 / 4u + lg);
    }
    for (var i = li; i < TK * (TN / 4u); i += invocations) {
        let wk = i / (TN / 4u);
        let wq = i % (TN / 4u);
        let oc_block = (n_base + wq * 4u) / 16u;
        var w = vec4<f32>(0.0);
        if (oc_block < p.oc_blocks) {
            // Blocked weights [oc_block][ky][kx][ic][16]: vec4 wq % 4 of input channel c0 + wk.
            w = from_st4(weights[((oc_block * K + ky) * K + kx) * p.in_c * 4u + (c0 + wk) * 4u + wq % 4u]);
        }
        tile_w[buf * TK * (TN / 4u) + i] = w;
    }
}
