// conv_transpose2d_coop: conv_transpose2d (TensorFlow conv2d_transpose, stride 2, 'SAME' output
// 2H x 2W) as a phase-split implicit GEMM on cooperative matrices (f16 16x16x16 operands, f32
// accumulation; the GEMM, tiles and epilogue are the prelude gemm_coop.wgsl's). Loaded at f16
// only, joined after coop_enable.wgsl, precision_f16.wgsl, conv_common.wgsl and gemm_coop.wgsl.
//
// Output pixel (r, s) = (2a + py, 2b + px) receives input pixel (a - ty, b - tx) through kernel
// tap (dy, dx) = (py + 2 ty, px + 2 tx): split by output phase (py, px), the layer is four
// ordinary convolutions over the (a, b) grid, with taps 2 x 2 (phase (0, 0)), 2 x 1, 1 x 2 and
// 1 x 1 (phase (1, 1)) for K = 3, and no product with an inserted zero. Each phase is a GEMM of
// M = its pixels in the band, depth = its taps x in_c in stages of TK input channels of one tap
// (stage s: tap s / chunks = (ty, tx) in row-major order, channels c0 = (s % chunks) TK).
// Input rows and columns outside the input are zero. The transposed conv takes no deferred norm.
// Invocation li loads the tile rows and channel group of conv2d_coop (`ar`, `ab`: the input
// pixel of tap (0, 0) of each, computed once per workgroup).
//
// Bindings and overrides: conv_transpose2d's (conv_common.wgsl: 0 params, 1 input, 3 bias,
// 4 output; K), gemm_coop's (2 weights, 6 stats; SG, TK, STATS).
// Dispatch: workgroups (x, ceil(out_c / 64), 4 z), x * z >= ceil(P / 64) with P the pixels of
// the largest phase in the band; phase = wid.z % 4 = 2 py + px, pixel tile
// (wid.z / 4) * num_workgroups.x + wid.x within the phase; wid.z * num_workgroups.x + wid.x is
// the tile's index in the partials.

// Input pixel (row a, column b) of tap (0, 0) for this invocation's tile rows; row -1 past the
// phase's last pixel.
var<private> ar: vec4<i32>;
var<private> ab: vec4<i32>;
// The phase (py, px), its first output row in the band, its columns, the tile's first pixel.
var<private> phase: vec2<u32>;
var<private> first_row: u32;
var<private> cols: u32;
var<private> tile_m: u32;

fn load_stage(s: u32, buf: u32) {
    let chunks = p.in_c / TK;
    let tap = s / chunks;
    let c0 = (s % chunks) * TK;
    let nx = (K - phase.y + 1u) / 2u;
    let ty = tap / nx;
    let tx = tap % nx;
    load_b(buf, phase.x + 2u * ty, phase.y + 2u * tx, c0);
    let per_row = TK / 4u;
    let q = inv % per_row;
    let g = c0 / 4u + q;
    let rows = 4u * SG / per_row;
    for (var j = 0u; j < TM / rows; j++) {
        var v = st4();
        let iy = ar[j] - i32(ty);
        let ix = ab[j] - i32(tx);
        if (ar[j] >= 0 && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
            let row = i32(p.in_shift / 4u) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u);
            v = input[row + ix * i32(p.in_c / 4u) + i32(g)];
        }
        put_a(buf, inv / per_row + j * rows, q, v);
    }
}

fn out_index(m: u32) -> u32 {
    let pm = tile_m + m;
    let r = first_row + 2u * (pm / cols);
    let s = 2u * (pm % cols) + phase.y;
    return p.out_shift + ((r - p.out_row0) * p.out_w + s) * p.out_c;
}

@compute @workgroup_size(4u * SG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let ph = wid.z % 4u;
    phase = vec2<u32>(ph / 2u, ph % 2u);
    let tile = wid.z * nwg.x + wid.x;
    inv = li;
    tile_n = wid.y * TN;
    tile_m = ((wid.z / 4u) * nwg.x + wid.x) * TM;
    // This phase's output rows in the band (first_row, first_row + 2, ...) and columns.
    first_row = p.out_row0 + (p.out_row0 + phase.x) % 2u;
    let end = p.out_row0 + p.band_rows;
    let rows_p = select(0u, (end - first_row + 1u) / 2u, first_row < end);
    cols = (p.out_w + 1u - phase.y) / 2u;
    let pixels = rows_p * cols;
    // Uniform per workgroup: a tile past the phase's end returns before any barrier.
    if (tile_m >= pixels) {
        if (STATS) {
            partials(tile, 0u);
        }
        return;
    }
    let per_row = TK / 4u;
    let rows = 4u * SG / per_row;
    for (var j = 0u; j < 4u; j++) {
        let pm = tile_m + li / per_row + j * rows;
        let real = j < TM / rows && pm < pixels;
        ar[j] = select(-1, i32((first_row + 2u * (pm / cols) - phase.x) / 2u), real);
        ab[j] = select(0, i32(pm % cols), real);
    }
    let ny = (K - phase.x + 1u) / 2u;
    let nx = (K - phase.y + 1u) / 2u;
    gemm(ny * nx * (p.in_c / TK), sg);
    epilogue(tile, min(TM, pixels - tile_m));
}
