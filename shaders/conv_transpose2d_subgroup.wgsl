// conv_transpose2d_subgroup: conv_transpose2d.wgsl for adapters with subgroups (feature
// SUBGROUP, subgroup size a multiple of 8). Same math, weights layout and results; the same
// bindings but the weights, which are a texture as in conv2d_subgroup.wgsl:
//   y[r, s, o] = sum over (dy, dx, c) with r = 2i + dy, s = 2j + dx of x[i, j, c] * w[c, o, dy, dx]
// Each invocation computes 16 output channels for 8 output pixels of one row that share a
// column parity. What differs:
// - every workgroup has one output row parity and one column parity (both from z), so the taps
//   that reach its pixels are the same for all its lanes and the others are skipped for real
//   (a lavapipe subgroup runs every path any of its lanes takes);
// - the 8 lanes that share an output channel block each load 2 of the 16 weight vec4s of a tap
//   and share them with subgroupBroadcast (conv2d_subgroup.wgsl), instead of every lane
//   loading all 16;
// - the input pixels of a kernel row are a sliding window: with column parity 0 the taps kx = 0
//   and 2 read input columns j0 + q and j0 + q - 1, so 9 loads serve both instead of 16.
// The loops stay uniform across the subgroup: a lane returns early only with all the other lanes
// of its subgroup (no row in the band), and rows or columns outside the output read zeros and
// store nothing.
//
// Bindings (group 0): as conv_transpose2d.wgsl (the prelude conv_common.wgsl, joined before
// this file at load time, declares all but the weights; its col, ld (with the identity norm),
// mac16 and store16 are used here).
// Overrides: K (kernel size).
// Dispatch: workgroups (ceil(groups / tw), ceil(ceil(band_rows / 2) / th), 4 * oc_blocks) with
//   groups = ceil(ceil(out_w / 2) / 8), th = 64 / tw, tw = tile_w (the prelude's `grid`);
//   z = 4 * oc_block + 2 * row parity + column parity.

@group(0) @binding(2) var weights: texture_2d<u32>;

// Weight vec4 `i`, as in conv2d_subgroup.wgsl (4096 vec4s of f32 bits per texture row).
fn wld(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(textureLoad(weights, vec2<u32>(i & 4095u, i >> 12u), 0));
}

// The 16 weight vec4s of one channel group, loaded 2 per lane: lane l holds vec4s l and 8 + l.
fn bcast16(lo: vec4<f32>, hi: vec4<f32>) -> array<mat4x4<f32>, 4> {
    return array<mat4x4<f32>, 4>(
        mat4x4<f32>(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u)),
        mat4x4<f32>(subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u)),
        mat4x4<f32>(subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u)),
        mat4x4<f32>(subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u)),
    );
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sid: u32) {
    // Tiles as in the prelude's `grid`, over rows of one parity.
    let gid = grid(wid, li);
    let prow = gid.y;
    let ocb = wid.z / 4u;
    let phy = (wid.z / 2u) % 2u;
    let phx = wid.z % 2u;
    // Band rows of parity phy (in the output's own row numbers): 2 * prow + q.
    let band_row = 2u * prow + ((phy + p.out_row0) % 2u);
    let oy = p.out_row0 + band_row;
    let row_on = band_row < p.band_rows;
    // A subgroup with no lane in the band returns at once (as conv2d_subgroup.wgsl's `idle`).
    if (subgroupAll(!row_on)) {
        return;
    }
    let lane = sid % 8u;
    // Output columns of this invocation: 2 * (j0 + q) + phx for q in 0..8.
    let j0 = gid.x * 8u;
    let s0 = 2u * j0 + phx;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    let tap = p.in_c * 4u;
    let n = Norm(vec4<f32>(1.0), vec4<f32>(0.0));
    let c0 = i32(j0);
    // Kernel rows of this row parity: ky = phy, phy + 2, ... (oy - ky even).
    for (var ky = phy; ky < K; ky += 2u) {
        let dyr = i32(oy) - i32(ky);
        let row_ok = row_on && dyr >= 0 && dyr / 2 < i32(p.in_h);
        let rb = select(-1, i32(p.in_shift / 4u) + (dyr / 2 - i32(p.in_row0)) * i32(p.in_w * p.in_c / 4u), row_ok);
        for (var g = 0u; g < p.in_c / 4u; g++) {
            // Window for the first tap column kx = phx: input columns j0 + q.
            var x0 = ld(col(c0, rb), g, n); var x1 = ld(col(c0 + 1, rb), g, n);
            var x2 = ld(col(c0 + 2, rb), g, n); var x3 = ld(col(c0 + 3, rb), g, n);
            var x4 = ld(col(c0 + 4, rb), g, n); var x5 = ld(col(c0 + 5, rb), g, n);
            var x6 = ld(col(c0 + 6, rb), g, n); var x7 = ld(col(c0 + 7, rb), g, n);
            var wi = ((ocb * K + ky) * K + phx) * tap + g * 16u;
            for (var kx = phx; kx < K; kx += 2u) {
                let w = bcast16(wld(wi + lane), wld(wi + 8u + lane));
                wi += 2u * tap;
                mac16(&a0, w[0], w[1], w[2], w[3], x0); mac16(&a1, w[0], w[1], w[2], w[3], x1);
                mac16(&a2, w[0], w[1], w[2], w[3], x2); mac16(&a3, w[0], w[1], w[2], w[3], x3);
                mac16(&a4, w[0], w[1], w[2], w[3], x4); mac16(&a5, w[0], w[1], w[2], w[3], x5);
                mac16(&a6, w[0], w[1], w[2], w[3], x6); mac16(&a7, w[0], w[1], w[2], w[3], x7);
                if (kx + 2u < K) {
                    // Tap column kx + 2 reads one input column to the left.
                    x7 = x6; x6 = x5; x5 = x4; x4 = x3; x3 = x2; x2 = x1; x1 = x0;
                    x0 = ld(col(c0 - 1 - i32((kx - phx) / 2u), rb), g, n);
                }
            }
        }
    }
    if (!row_on || ocb >= p.oc_blocks) {
        return;
    }
    store16(band_row, s0, ocb, a0); store16(band_row, s0 + 2u, ocb, a1);
    store16(band_row, s0 + 4u, ocb, a2); store16(band_row, s0 + 6u, ocb, a3);
    store16(band_row, s0 + 8u, ocb, a4); store16(band_row, s0 + 10u, ocb, a5);
    store16(band_row, s0 + 12u, ocb, a6); store16(band_row, s0 + 14u, ocb, a7);
}
