// conv2d_tiled: 2-D convolution as an implicit GEMM with workgroup-memory tiles, for the
// K x K layers whose input channels come in multiples of 16 (the 3x3 layers of the network).
//
// GEMM view: M = output pixels of the band (band_rows x out_w), N = output channels,
// depth = K x K taps x in_c. A workgroup of 256 invocations computes a 64-pixel x 64-channel
// tile; each invocation 4 pixels x 4 channels (one mat4x4 accumulator: column = pixel). The depth
// is walked 16 input channels of one tap at a time: the workgroup loads the 64 x 16 input
// values (one vec4 of 4 channels per invocation, with padding, upsampling and the deferred
// norm applied as in conv2d) and the 16 x 64 weights (one vec4 per invocation) into
// workgroup memory, then every invocation accumulates 16 outer products from them. Nothing is
// read twice from global memory within a tile: each input value is reused by 64 channels and
// each weight by 64 pixels. Suited to GPUs (on lavapipe, where workgroup memory and barriers
// are slow, the register-blocked kernels win; `select` times both).
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

// [k][m]: input channel k of the step, pixel m of the tile.
var<workgroup> tile_x: array<f32, 1024>;
// [k][n]: input channel k of the step, output channel n of the tile.
var<workgroup> tile_w: array<f32, 1024>;

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

    let groups = p.in_c / 4u;
    for (var ky = 0u; ky < K; ky++) {
        for (var kx = 0u; kx < K; kx++) {
            let o = select(-1, tap_offset(oy, ox, ky, kx), in_band);
            let w_tap = ((oc_block * K + ky) * K + kx) * p.in_c * 4u + ((wq * 4u) % 16u) / 4u;
            for (var c0 = 0u; c0 < p.in_c; c0 += TK) {
                let x = load_x(o, c0 / 4u + lg);
                let xi = (lg * 4u) * TM + lm;
                tile_x[xi] = x.x;
                tile_x[xi + TM] = x.y;
                tile_x[xi + 2u * TM] = x.z;
                tile_x[xi + 3u * TM] = x.w;
                var w = vec4<f32>(0.0);
                if (w_ok) {
                    w = weights[w_tap + (c0 + wk) * 4u];
                }
                let wi = wk * TN + wq * 4u;
                tile_w[wi] = w.x;
                tile_w[wi + 1u] = w.y;
                tile_w[wi + 2u] = w.z;
                tile_w[wi + 3u] = w.w;
                workgroupBarrier();
                for (var k = 0u; k < TK; k++) {
                    let xb = k * TM + tm * 4u;
                    let wb = k * TN + tn * 4u;
                    let b = vec4<f32>(tile_w[wb], tile_w[wb + 1u], tile_w[wb + 2u], tile_w[wb + 3u]);
                    acc[0] += b * tile_x[xb];
                    acc[1] += b * tile_x[xb + 1u];
                    acc[2] += b * tile_x[xb + 2u];
                    acc[3] += b * tile_x[xb + 3u];
                }
                workgroupBarrier();
            }
        }
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
