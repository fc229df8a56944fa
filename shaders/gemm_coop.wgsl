// gemm_coop: the prelude of the cooperative-matrix convolutions (conv2d_coop,
// conv_transpose2d_coop): an implicit GEMM on 16x16x16 cooperative matrices with f16 operands
// and f32 accumulation, its workgroup tiles, the loop over the depth, the weights loader and the
// epilogue. Joined after coop_enable.wgsl, precision_f16.wgsl (the tiles and operands are `st`:
// f16 only) and conv_common.wgsl, before the kernel, which defines what differs:
//   fn load_stage(s: u32, buf: u32)  writes stage s of the depth into buffer buf of tile_a
//                                    (its input rows) and tile_b (through load_b)
//   fn out_index(m: u32) -> u32      the output element of channel 0 of the tile's pixel m
//
// GEMM view: M = output pixels (TM = 64 per workgroup tile), N = output channels (TN = 64),
// depth = taps x in_c, walked in stages of TK input channels (override, 16 or 32) of one tap.
// A workgroup is 4 subgroups of SG invocations (override: the adapter's subgroup size, 32 or
// 64; @builtin(subgroup_id), so the device has the SUBGROUP feature); subgroup g computes the
// 32 x 32 quarter at rows 32 (g % 2), columns 32 (g / 2) of the tile as 2 x 2 accumulators
// coop_mat16x16<f32, C>. The operand tiles are double-buffered: stage s + 1 is loaded while
// stage s is multiplied, one barrier per stage.
// naga 30 has no element access on cooperative matrices: the accumulators leave through
// workgroup memory (coopStoreT into tile_c, f32), where the epilogue adds the bias, computes the
// instance-norm partials (with STATS) and stores `st`. naga 30.0.2 panics on a coopStore whose
// pointer or stride is an inline expression, and rejects one whose value is not a `let`: all
// three are bound with `let` first.
//
// Tiles (workgroup memory, 36 KiB: select.rs COOP_WORKGROUP_BYTES): row strides padded by 8
// halves (4 floats) against bank conflicts, every fragment 16-byte aligned.
//   tile_a [buf][m][k]  input: pixel m, input channel c0 + k of the stage's tap (row stride AS)
//   tile_b [buf][k][n]  weights: input channel c0 + k, output channel n_base + n (row stride BS)
//   tile_c [m][n]       accumulators, f32 (row stride CS)
// Bindings added (group 0): besides conv_common's 0 params, 1 input, 3 bias, 4 output (and
// 5 norm_in in conv2d_coop):
//   2 weights storage read        st4 blocks [oc_block][ky][kx][ic][16] (model::gpu::weights,
//                                 the layout of conv2d and conv_transpose2d)
//   6 stats   storage read_write  with STATS: per-chunk Welford partials of the output for
//                                 instance_norm_finalize, vec4 (count, mean, M2, 0) at
//                                 [((stats_base + tile) * 2 + half) * out_c + c], two per
//                                 workgroup tile and channel (the tile's two halves of pixels);
//                                 without STATS any 16-byte buffer
// Overrides: SG, TK, STATS, besides conv_common's.

@group(0) @binding(2) var<storage, read> weights: array<st4>;
@group(0) @binding(6) var<storage, read_write> stats: array<vec4<f32>>;

override SG: u32 = 32u; // subgroup size: a workgroup is 4 subgroups
override TK: u32 = 32u; // input channels per stage (16 or 32; in_c is a multiple)
override STATS: bool = false;
const TM: u32 = 64u; // pixels per tile
const TN: u32 = 64u; // output channels per tile
const AS: u32 = 40u; // tile_a row stride (TK at most 32, + 8)
const BS: u32 = 72u; // tile_b row stride (TN + 8)
const CS: u32 = 68u; // tile_c row stride (TN + 4)
const A_BUF: u32 = 2560u; // TM * AS
const B_BUF: u32 = 2304u; // 32 * BS

var<workgroup> tile_a: array<st, 5120>;
var<workgroup> tile_b: array<st, 4608>;
var<workgroup> tile_c: array<f32, 4352>;

// This invocation's local index and the tile's first output channel (set by the entry point).
var<private> inv: u32;
var<private> tile_n: u32;

// Weights of tap (ky, kx), input channels c0 .. c0 + TK, output channels tile_n .. tile_n + TN
// into buffer buf of tile_b; zeros past the last output channel block.
fn load_b(buf: u32, ky: u32, kx: u32, c0: u32) {
    for (var i = inv; i < TK * (TN / 4u); i += 4u * SG) {
        let k = i / (TN / 4u);
        let n = (i % (TN / 4u)) * 4u;
        let oc_block = (tile_n + n) / 16u;
        var w = st4();
        if (oc_block < p.oc_blocks) {
            w = weights[((oc_block * K + ky) * K + kx) * p.in_c * 4u + (c0 + k) * 4u + (n % 16u) / 4u];
        }
        let t = buf * B_BUF + k * BS + n;
        tile_b[t] = w.x;
        tile_b[t + 1u] = w.y;
        tile_b[t + 2u] = w.z;
        tile_b[t + 3u] = w.w;
    }
}

// Channels [4g, 4g + 4) at vec4 offset o of the input, normalised (and rectified) with NORM_IN,
// as `st`: the operand the matrix unit multiplies.
fn operand(o: i32, g: u32) -> st4 {
    let v = input[o];
    if (NORM_IN) {
        let lo = norm_in[2u * g];
        let hi = norm_in[2u * g + 1u];
        var x = vec4<f32>(lo.xz, hi.xz) * from_st4(v) + vec4<f32>(lo.yw, hi.yw);
        if (NORM_RELU) {
            x = max(x, vec4<f32>(0.0));
        }
        return to_st4(x);
    }
    return v;
}

// Writes 4 operand values at row m, columns 4q .. 4q + 3 of buffer buf of tile_a.
fn put_a(buf: u32, m: u32, q: u32, v: st4) {
    let t = buf * A_BUF + m * AS + 4u * q;
    tile_a[t] = v.x;
    tile_a[t + 1u] = v.y;
    tile_a[t + 2u] = v.z;
    tile_a[t + 3u] = v.w;
}

// The whole depth (`steps` stages) into this subgroup's accumulators, then into tile_c.
fn gemm(steps: u32, sg: u32) {
    let m0 = (sg % 2u) * 32u;
    let n0 = (sg / 2u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    load_stage(0u, 0u);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let buf = s % 2u;
        if (s + 1u < steps) {
            load_stage(s + 1u, 1u - buf);
        }
        for (var kf = 0u; kf < TK; kf += 16u) {
            let pa0 = &tile_a[buf * A_BUF + m0 * AS + kf];
            let pa1 = &tile_a[buf * A_BUF + (m0 + 16u) * AS + kf];
            let pb0 = &tile_b[buf * B_BUF + kf * BS + n0];
            let pb1 = &tile_b[buf * B_BUF + kf * BS + n0 + 16u];
            let a0 = coopLoadT<coop_mat16x16<st, A>>(pa0, AS);
            let a1 = coopLoadT<coop_mat16x16<st, A>>(pa1, AS);
            let b0 = coopLoadT<coop_mat16x16<st, B>>(pb0, BS);
            let b1 = coopLoadT<coop_mat16x16<st, B>>(pb1, BS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    let stride = CS;
    let p00 = &tile_c[m0 * CS + n0];
    let p01 = &tile_c[m0 * CS + n0 + 16u];
    let p10 = &tile_c[(m0 + 16u) * CS + n0];
    let p11 = &tile_c[(m0 + 16u) * CS + n0 + 16u];
    let v00 = c00;
    let v01 = c01;
    let v10 = c10;
    let v11 = c11;
    coopStoreT(v00, p00, stride);
    coopStoreT(v01, p01, stride);
    coopStoreT(v10, p10, stride);
    coopStoreT(v11, p11, stride);
    workgroupBarrier();
}

// The output of the tile's first `valid` pixels: tile_c + bias, stored as `st`; then, with
// STATS, the instance-norm partials.
fn epilogue(tile: u32, valid: u32) {
    for (var i = inv; i < TM * (TN / 4u); i += 4u * SG) {
        let m = i / (TN / 4u);
        let q = i % (TN / 4u);
        let oc0 = tile_n + 4u * q;
        if (m < valid && oc0 < p.out_c) {
            let c = m * CS + 4u * q;
            let v = vec4<f32>(tile_c[c], tile_c[c + 1u], tile_c[c + 2u], tile_c[c + 3u]) + bias[oc0 / 4u];
            let base = out_index(m) + oc0;
            for (var e = 0u; e < 4u; e++) {
                if (oc0 + e < p.out_c) {
                    output[base + e] = to_st(v[e]);
                }
            }
        }
    }
    if (STATS) {
        partials(tile, valid);
    }
}

// Per channel of the tile, (count, mean, M2) of the f32 sums (before the f16 store, the bias in
// the mean) over each half of its first `valid` pixels: invocation n + TN * half for channel
// n, two passes (mean, then squared deviations). A tile past the band's end writes empty
// partials (valid = 0), which instance_norm_finalize skips.
fn partials(tile: u32, valid: u32) {
    if (inv >= 2u * TN) {
        return;
    }
    let n = inv % TN;
    let half = inv / TN;
    let oc = tile_n + n;
    let lo = half * (TM / 2u);
    let hi = min(lo + TM / 2u, valid);
    var count = 0.0;
    var sum = 0.0;
    for (var m = lo; m < hi; m++) {
        sum += tile_c[m * CS + n];
        count += 1.0;
    }
    let mean = sum / max(count, 1.0);
    var m2 = 0.0;
    for (var m = lo; m < hi; m++) {
        let d = tile_c[m * CS + n] - mean;
        m2 += d * d;
    }
    if (oc < p.out_c) {
        let b = bias[oc / 4u][oc % 4u];
        stats[((p.stats_base + tile) * 2u + half) * p.out_c + oc] = vec4<f32>(count, mean + b, m2, 0.0);
    }
}
