// conv2d_tiled: 2-D convolution as an implicit GEMM with workgroup-memory tiles, for the
// K x K layers whose input channels come in multiples of 16 (the 3x3 layers of the network).
//
// GEMM view: M = output pixels of the band (band_rows x out_w), N = output channels,
// depth = K x K taps x in_c. A workgroup of 256 invocations computes a 64-pixel x 64-channel
// tile; each invocation 4 pixels x 4 channels (one mat4x4 accumulator: column = pixel). The depth
// is walked in steps of 16 input channels of one tap: each invocation loads one vec4 of the
// step's input (4 channels of one pixel, with padding, upsampling and the deferred norm applied
// as in conv2d) and one vec4 of its weights (4 output channels of one input channel) into
// workgroup memory, and accumulates 4 mat4x4 x vec4 products from vec4 reads of the tiles.
// The tiles are double-buffered: step s + 1 is loaded into the other buffer while step s is
// computed, so each step costs one barrier. Each input value is reused by 64 channels and
// each weight by 64 pixels. Suited to GPUs (on lavapipe, where workgroup memory and barriers
// are slow, the register-blocked kernels win; `select` times both). Workgroup memory: 16 KiB.
//
// Bindings, overrides and the output are those of conv2d (the prelude conv_common.wgsl, joined
// after this file at load time, declares them; this file adds the weights, blocked as
// [oc_block][ky][kx][ic][16]), so the plan binds it as it binds conv2d. in_c must be a multiple
// of 16.
// Dispatch: workgroups (x, ceil(out_c / 64), z) with x * z >= ceil(band_rows * out_w / 64);
// pixel tile t = wid.z * num_workgroups.x + wid.x.

@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;

const TM: u32 = 64u; // pixels per tile
const TN: u32 = 64u; // output channels per tile
const TK: u32 = 16u; // input channels per depth step

// Two buffers of each tile. Input: [buffer][pixel m][group q] = channels 4q..4q+3 of the step
// for pixel m. Weights: [buffer][input channel k][group j] = output channels 4j..4j+3 of the tile.
var<workgroup> tile_x: array<vec4<f32>, 512>;
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
    var v = input[o + i32(g)];
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

@compute @workgroup_size(256, 1, 1)
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

    // What this invocation loads: pixel lm, channel group lg (input); step channel wk, output
    // channels 4 wq .. 4 wq + 3 of the tile (weights).
    let lm = li / 4u;
    let lg = li % 4u;
    let wk = li / 16u;
    let wq = li % 16u;
    let pm = m_base + lm;
    let in_band = pm < pixels;
    let oy = p.out_row0 + select(0u, pm / p.out_w, in_band);
    let ox = select(0u, pm % p.out_w, in_band);
    let oc_block = (n_base + wq * 4u) / 16u;
    let w_ok = oc_block < p.oc_blocks;

    // What this invocation computes: pixels 4 tm .. 4 tm + 3, channels 4 tn .. 4 tn + 3.
    let tm = li % 16u;
    let tn = li / 16u;
    var acc = mat4x4<f32>();

    let chunks = p.in_c / TK;
    let steps = K * K * chunks;
    load_step(0u, 0u, lm, lg, wk, wq, oy, ox, in_band, oc_block, w_ok);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let cur = (s % 2u) * 256u;
        if (s + 1u < steps) {
            load_step(s + 1u, ((s + 1u) % 2u) * 256u, lm, lg, wk, wq, oy, ox, in_band, oc_block, w_ok);
        }
        for (var q = 0u; q < 4u; q++) {
            // Input channels 4q..4q+3 of the step: their weights for the 4 output channels as
            // the columns of w, and each pixel's 4 values.
            let w = mat4x4<f32>(
                tile_w[cur + (4u * q) * 16u + tn],
                tile_w[cur + (4u * q + 1u) * 16u + tn],
                tile_w[cur + (4u * q + 2u) * 16u + tn],
                tile_w[cur + (4u * q + 3u) * 16u + tn],
            );
            acc[0] += w * tile_x[cur + (4u * tm) * 4u + q];
            acc[1] += w * tile_x[cur + (4u * tm + 1u) * 4u + q];
            acc[2] += w * tile_x[cur + (4u * tm + 2u) * 4u + q];
            acc[3] += w * tile_x[cur + (4u * tm + 3u) * 4u + q];
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
                output[base + c] = v[c];
            }
        }
    }
}

// Loads depth step `s` (tap (ky, kx), input channels c0..c0+15) into the buffer at `buf`: this
// invocation's input vec4 (pixel lm, group lg) and weight vec4 (channel wk, outputs 4wq..4wq+3).
fn load_step(s: u32, buf: u32, lm: u32, lg: u32, wk: u32, wq: u32, oy: u32, ox: u32, in_band: bool, oc_block: u32, w_ok: bool) {
    let chunks = p.in_c / TK;
    let tap = s / chunks;
    let c0 = (s % chunks) * TK;
    let ky = tap / K;
    let kx = tap % K;
    let o = select(-1, tap_offset(oy, ox, ky, kx), in_band);
    tile_x[buf + lm * 4u + lg] = load_x(o, c0 / 4u + lg);
    var w = vec4<f32>(0.0);
    if (w_ok) {
        // Blocked weights [oc_block][ky][kx][ic][16]: vec4 wq % 4 of input channel c0 + wk.
        w = weights[((oc_block * K + ky) * K + kx) * p.in_c * 4u + (c0 + wk) * 4u + wq % 4u];
    }
    tile_w[buf + wk * 16u + wq] = w;
}
