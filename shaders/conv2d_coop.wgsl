// conv2d_coop: conv2d as an implicit GEMM on cooperative matrices (f16 16x16x16 operands, f32
// accumulation; the GEMM, tiles and epilogue are the prelude gemm_coop.wgsl's), for the K x K
// layers whose input channels come in multiples of TK: the 3 x 3 layers of the style networks,
// stride 1 (residual blocks) and 2 (conv2, conv3). Loaded at f16 only, joined after
// coop_enable.wgsl, precision_f16.wgsl, conv_common.wgsl and gemm_coop.wgsl.
//
// Stage s of the depth is tap (ky, kx) = (s / chunks / K, s / chunks % K), input channels
// c0 = (s % chunks) TK .. c0 + TK (chunks = in_c / TK). Its input tile is the im2col of those
// channels for the tile's TM output pixels: padding (zero or reflected), upsampling and the
// deferred norm of the previous layer applied as in conv2d (`operand`), the normalised value
// rounded to f16 (the matrix unit's operand type).
// Invocation li loads channel group q = li % (TK / 4) of the tile rows li / (TK / 4) + j R,
// R = 4 SG / (TK / 4), for j < TM / R (at most 4: SG >= 32); their output pixels are computed
// once per workgroup (`ay`, `ax`), not per stage.
//
// Bindings and overrides: conv2d's (conv_common.wgsl: 0 params, 1 input, 3 bias, 4 output,
// 5 norm_in; K, STRIDE, UPSAMPLE, REFLECT, NORM_IN, NORM_RELU), gemm_coop's (2 weights, 6 stats;
// SG, TK, STATS).
// Dispatch: workgroups (x, ceil(out_c / 64), z) with x * z >= ceil(band_rows * out_w / 64);
// pixel tile t = wid.z * num_workgroups.x + wid.x (also the tile's index in the partials).

// Output pixel (row, column) of this invocation's tile rows, row -1 past the band's end.
var<private> ay: vec4<i32>;
var<private> ax: vec4<i32>;
// The tile's first pixel (band-relative linear index).
var<private> tile_m: u32;

fn load_stage(s: u32, buf: u32) {
    let chunks = p.in_c / TK;
    let tap = s / chunks;
    let c0 = (s % chunks) * TK;
    let ky = tap / K;
    let kx = tap % K;
    load_b(buf, ky, kx, c0);
    let per_row = TK / 4u;
    let q = inv % per_row;
    let g = c0 / 4u + q;
    let rows = 4u * SG / per_row;
    for (var j = 0u; j < TM / rows; j++) {
        var v = st4();
        if (ay[j] >= 0) {
            let iy = source(ay[j] * i32(STRIDE) + i32(ky) - p.pad_top, p.in_h);
            let ix = source(ax[j] * i32(STRIDE) + i32(kx) - p.pad_left, p.in_w);
            if (iy >= 0 && ix >= 0) {
                let row = i32(p.in_shift / 4u) + (iy - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u);
                v = operand(row + ix * i32(p.in_c / 4u) + i32(g), g);
            }
        }
        put_a(buf, inv / per_row + j * rows, q, v);
    }
}

fn out_index(m: u32) -> u32 {
    return p.out_shift + (tile_m + m) * p.out_c;
}

@compute @workgroup_size(4u * SG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let pixels = p.band_rows * p.out_w;
    let tile = wid.z * nwg.x + wid.x;
    inv = li;
    tile_n = wid.y * TN;
    tile_m = tile * TM;
    // Uniform per workgroup: a tile past the end returns before any barrier.
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
        ay[j] = select(-1, i32(p.out_row0 + pm / p.out_w), real);
        ax[j] = select(0, i32(pm % p.out_w), real);
    }
    gemm(K * K * (p.in_c / TK), sg);
    epilogue(tile, min(TM, pixels - tile_m));
}
