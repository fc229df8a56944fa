// conv2d_subgroup: conv2d.wgsl for adapters with subgroups (feature SUBGROUP, subgroup size a
// multiple of 8). Same bindings (but the weights), overrides, layouts, dispatch and results as
// conv2d.wgsl; the difference is how weights are read: the 8 invocations of a subgroup that
// share an output channel block each load a different vec4 of the block's weights and share
// them with subgroupBroadcast, so every weight is loaded once per subgroup instead of once per
// lane; and they load them from a texture, not a storage buffer (texel fetches are vector
// gathers on lavapipe, where every storage-buffer load is a per-lane loop).
// The loops must stay uniform across the subgroup: a lane returns early only with all the other
// lanes of its subgroup (`idle`); rows or columns outside the output read zeros and store
// nothing.
//
// Entry points: main (16 output channels x 8 pixels), main_narrow (4 x 32); see conv2d.wgsl.
// main holds the input pixels of a kernel row in registers as a sliding window (one per residue
// of the tap column modulo the stride), so each input vec4 is loaded once per kernel row
// (8 + K - 1 loads at stride 1) instead of once per tap (8 K): on adapters where every buffer
// load is a per-lane loop (lavapipe) the loads, not the arithmetic, set the pace. For stride 1
// main_narrow_slide (4 x 16) does the same for narrow blocks; it dispatches ceil(out_w / 16)
// pixel groups per row where main_narrow has ceil(out_w / 32), and computes two output rows per
// invocation (ceil(band_rows / 2) rows; see main_narrow_slide).
// For 3 x 3 stride-1 layers with 16-channel blocks: main_wino, main through Winograd F(2, 3)
// along each kernel row (4 weight products per pixel pair instead of 6) for 4 output pixels,
// with its own weights layout (4 transformed taps per kernel row; see main_wino).
//
// Bindings (group 0): as conv2d.wgsl (0, 1, 3, 4, 5 and the overrides in the prelude
// conv_common.wgsl, joined before this file at load time), plus:
//   2 weights texture_2d<u32>     vec4 blocks [oc_block][ky][kx][ic][16 or 4] as the bits of
//                                  f32 values (rounded to f16 values in f16 plans: the texture
//                                  is f32 at both precisions), 4096 vec4s per texture row
//                                  (Rgba32Uint; `wld`)
//   6 stats   storage  read_write  (main only) per-chunk Welford partials of the output for
//                                  instance_norm_finalize: vec4 (count, mean, M2, 0) at
//                                  [((stats_base + workgroup) * 8 + li / 8) * out_c + c],
//                                  one per 8 lanes (subgroups of a multiple of 8 lanes)
//                                  (with STATS; else any 16-byte buffer)
// Overrides: K, STRIDE, UPSAMPLE, REFLECT, NORM_IN, NORM_RELU (as conv2d.wgsl), STATS (main:
// the output's instance-norm statistics in the epilogue, so no separate statistics pass).
// Dispatch: as conv2d.wgsl.

// (No `enable subgroups;`: naga 30 rejects the directive and accepts the builtins when the
// device has the SUBGROUP feature.)

@group(0) @binding(2) var weights: texture_2d<u32>;

// Weight vec4 `i` of the layout above, stored 4096 vec4s (bits of f32) per texture row: texel
// fetches are gathers on lavapipe, where a storage-buffer load is a per-lane loop.
fn wld(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(textureLoad(weights, vec2<u32>(i & 4095u, i >> 12u), 0));
}

@group(0) @binding(6) var<storage, read_write> stats: array<vec4<f32>>;

override STATS: bool = false;

// The norm of channel group g: lanes 0 and 1 of the subgroup load a and b, all lanes share them.
fn norm_of(g: u32, lane: u32) -> Norm {
    if (NORM_IN) {
        let mine = norm_in[2u * g + (lane & 1u)];
        let lo = subgroupBroadcast(mine, 0u);
        let hi = subgroupBroadcast(mine, 1u);
        return Norm(vec4<f32>(lo.xz, hi.xz), vec4<f32>(lo.yw, hi.yw));
    }
    return Norm(vec4<f32>(1.0), vec4<f32>(0.0));
}

// Weights of 16 output channels for one input channel: column j = channels 4j..4j+3.
fn w16(i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(wld(i), wld(i + 1u), wld(i + 2u), wld(i + 3u));
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

// True when none of this subgroup's lanes has a row in the band: the last workgroup row of a
// band whose rows are not a multiple of the tile's height (90 rows in tiles 8 high: 6 of 96 idle
// rows). Such a subgroup returns at once, all its lanes together, so the loops stay uniform
// where they run; on lavapipe a subgroup whose lanes are all idle still ran every loop.
fn idle(band_row: u32) -> bool {
    return subgroupAll(band_row >= p.band_rows);
}

// Welford update of this invocation's (n, mean, M2) of 16 channels with pixel `a` (bias not
// included) when `on`. For equal values the mean stays exact and M2 zero.
fn welford(n: ptr<function, f32>, mean: ptr<function, mat4x4<f32>>, m2: ptr<function, mat4x4<f32>>, a: mat4x4<f32>, on: bool) {
    if (on) {
        *n += 1.0;
        let r = 1.0 / *n;
        for (var j = 0u; j < 4u; j++) {
            let d = a[j] - (*mean)[j];
            (*mean)[j] += d * r;
            (*m2)[j] += d * (a[j] - (*mean)[j]);
        }
    }
}

// Chan-merges (n, mean, M2) over each group of 8 lanes (butterfly of subgroupShuffleXor, so any
// subgroup size that is a multiple of 8 works); the group's first lane writes its partial.
fn write_stats(wid: vec3<u32>, nwg: vec3<u32>, li: u32, sid: u32, ocb: u32, n0: f32, mean0: mat4x4<f32>, m20: mat4x4<f32>) {
    var n = n0;
    var mean = mean0;
    var m2 = m20;
    for (var mask = 1u; mask < 8u; mask *= 2u) {
        let nb = subgroupShuffleXor(n, mask);
        let total = n + nb;
        let f = select(0.0, nb / max(total, 1.0), total > 0.0);
        let g = select(0.0, n * nb / max(total, 1.0), total > 0.0);
        for (var j = 0u; j < 4u; j++) {
            let mb = subgroupShuffleXor(mean[j], mask);
            let qb = subgroupShuffleXor(m2[j], mask);
            let d = mb - mean[j];
            mean[j] += d * f;
            m2[j] += qb + d * d * g;
        }
        n = total;
    }
    if (sid % 8u != 0u) {
        return;
    }
    let k = (p.stats_base + wid.y * nwg.x + wid.x) * 8u + li / 8u;
    for (var c = 0u; c < 16u; c++) {
        let oc = ocb * 16u + c;
        if (oc < p.out_c) {
            let j = c / 4u;
            let mean_c = mean[j][c % 4u] + bias[ocb * 4u + j][c % 4u];
            stats[k * p.out_c + oc] = vec4<f32>(n, mean_c, m2[j][c % 4u], 0.0);
        }
    }
}

// The end of an idle subgroup (`idle`) in the kernels with STATS: its partials are empty
// (n = 0), as those of any lanes past the band's end.
fn skip(wid: vec3<u32>, nwg: vec3<u32>, li: u32, sid: u32, ocb: u32) {
    if (STATS) {
        write_stats(wid, nwg, li, sid, ocb, 0.0, mat4x4<f32>(), mat4x4<f32>());
    }
}

// welford for the 4 pixels a0..a3, the first `count` of them real.
fn welford4(n: ptr<function, f32>, mean: ptr<function, mat4x4<f32>>, m2: ptr<function, mat4x4<f32>>,
            a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>, count: u32) {
    welford(n, mean, m2, a0, count > 0u); welford(n, mean, m2, a1, count > 1u);
    welford(n, mean, m2, a2, count > 2u); welford(n, mean, m2, a3, count > 3u);
}

// Writes the 4 pixels a0..a3 of band row `band_row` from column ox0 (16 channels each).
fn store16x4(band_row: u32, ox0: u32, ocb: u32, a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>) {
    store16(band_row, ox0, ocb, a0); store16(band_row, ox0 + 1u, ocb, a1);
    store16(band_row, ox0 + 2u, ocb, a2); store16(band_row, ox0 + 3u, ocb, a3);
}

// The end of main: the epilogue statistics (with STATS), then the stores.
fn finish(wid: vec3<u32>, nwg: vec3<u32>, li: u32, sid: u32, gid: vec3<u32>,
          a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>,
          a4: mat4x4<f32>, a5: mat4x4<f32>, a6: mat4x4<f32>, a7: mat4x4<f32>) {
    let ox0 = gid.x * 8u;
    let band_row = gid.y;
    let ocb = min(gid.z, p.oc_blocks - 1u);
    if (STATS) {
        // Welford of this invocation's real pixels (without the bias: variance ignores it,
        // the mean gets it in write_stats), then merged over groups of 8 lanes.
        let row_on = band_row < p.band_rows;
        let count = select(0u, min(8u, p.out_w - min(ox0, p.out_w)), row_on);
        var n = 0.0;
        var mean = mat4x4<f32>();
        var m2 = mat4x4<f32>();
        welford4(&n, &mean, &m2, a0, a1, a2, a3, count);
        welford4(&n, &mean, &m2, a4, a5, a6, a7, max(count, 4u) - 4u);
        write_stats(wid, nwg, li, sid, ocb, n, mean, m2);
    }
    if (band_row >= p.band_rows || gid.z >= p.oc_blocks) {
        return;
    }
    store16x4(band_row, ox0, ocb, a0, a1, a2, a3);
    store16x4(band_row, ox0 + 4u, ocb, a4, a5, a6, a7);
}

@compute @workgroup_size(64, 1, 1)
fn main_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sid: u32) {
    let gid = grid(wid, li);
    let ox0 = gid.x * 32u;
    let band_row = gid.y;
    let ocb = min(gid.z, p.oc_blocks - 1u);
    if (idle(band_row)) {
        return;
    }
    let lane = sid % 4u;
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        for (var kx = 0u; kx < K; kx++) {
            var wi = ((ocb * K + ky) * K + kx) * p.in_c;
            for (var g = 0u; g < p.in_c / 4u; g++) {
                let n = norm_of(g, lane);
                let mine = wld(wi + lane);
                let w = mat4x4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
                                    subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
                wi += 4u;
                step4(&a0, w, ox0, kx, rb, g, n); step4(&a1, w, ox0 + 4u, kx, rb, g, n);
                step4(&a2, w, ox0 + 8u, kx, rb, g, n); step4(&a3, w, ox0 + 12u, kx, rb, g, n);
                step4(&a4, w, ox0 + 16u, kx, rb, g, n); step4(&a5, w, ox0 + 20u, kx, rb, g, n);
                step4(&a6, w, ox0 + 24u, kx, rb, g, n); step4(&a7, w, ox0 + 28u, kx, rb, g, n);
            }
        }
    }
    if (band_row >= p.band_rows || gid.z >= p.oc_blocks) {
        return;
    }
    store_narrow(band_row, ox0, ocb, a0); store_narrow(band_row, ox0 + 4u, ocb, a1);
    store_narrow(band_row, ox0 + 8u, ocb, a2); store_narrow(band_row, ox0 + 12u, ocb, a3);
    store_narrow(band_row, ox0 + 16u, ocb, a4); store_narrow(band_row, ox0 + 20u, ocb, a5);
    store_narrow(band_row, ox0 + 24u, ocb, a6); store_narrow(band_row, ox0 + 28u, ocb, a7);
}

// The wide kernel: 16 output channels x 8 pixels of one row, the input pixels of a kernel row
// held as a sliding window. With stride s the taps kx, kx + s, ... read the same input columns
// one pixel further on, so each residue r of kx mod s has its own window: 8 + (K - r - 1) / s
// loads per kernel row and channel group instead of 8 per tap (a 3 x 3 stride-2 layer: 17
// instead of 24; a 9 x 9 stride-1 one: 16 instead of 72).
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gid = grid(wid, li);
    let ocb = min(gid.z, p.oc_blocks - 1u);
    if (idle(gid.y)) {
        skip(wid, nwg, li, sid, ocb);
        return;
    }
    let lane = sid % 8u;
    let oy = p.out_row0 + gid.y;
    let s = i32(STRIDE);
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    let tap = p.in_c * 4u;
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        for (var g = 0u; g < p.in_c / 4u; g++) {
            let n = norm_of(g, lane);
            for (var r = 0u; r < STRIDE; r++) {
                // Window: x<j> is input column v + s j for the current tap column kx (v: the
                // first output pixel's column at that tap).
                var v = i32(gid.x * 8u * STRIDE + r) - p.pad_left;
                var x0 = ld(col(v, rb), g, n); var x1 = ld(col(v + s, rb), g, n);
                var x2 = ld(col(v + 2 * s, rb), g, n); var x3 = ld(col(v + 3 * s, rb), g, n);
                var x4 = ld(col(v + 4 * s, rb), g, n); var x5 = ld(col(v + 5 * s, rb), g, n);
                var x6 = ld(col(v + 6 * s, rb), g, n); var x7 = ld(col(v + 7 * s, rb), g, n);
                var wi = ((ocb * K + ky) * K + r) * tap + g * 16u;
                for (var kx = r; kx < K; kx += STRIDE) {
                    let w = bcast16(wld(wi + lane), wld(wi + 8u + lane));
                    wi += STRIDE * tap;
                    mac16(&a0, w[0], w[1], w[2], w[3], x0); mac16(&a1, w[0], w[1], w[2], w[3], x1);
                    mac16(&a2, w[0], w[1], w[2], w[3], x2); mac16(&a3, w[0], w[1], w[2], w[3], x3);
                    mac16(&a4, w[0], w[1], w[2], w[3], x4); mac16(&a5, w[0], w[1], w[2], w[3], x5);
                    mac16(&a6, w[0], w[1], w[2], w[3], x6); mac16(&a7, w[0], w[1], w[2], w[3], x7);
                    if (kx + STRIDE < K) {
                        v += s;
                        x0 = x1; x1 = x2; x2 = x3; x3 = x4; x4 = x5; x5 = x6; x6 = x7;
                        x7 = ld(col(v + 7 * s, rb), g, n);
                    }
                }
            }
        }
    }
    finish(wid, nwg, li, sid, gid, a0, a1, a2, a3, a4, a5, a6, a7);
}

// a += W x for the 16 output channels of W (the broadcast weights of one tap).
fn mac16w(a: ptr<function, mat4x4<f32>>, w: array<mat4x4<f32>, 4>, x: vec4<f32>) {
    mac16(a, w[0], w[1], w[2], w[3], x);
}

// W x for the 16 output channels of W.
fn mul16(w: array<mat4x4<f32>, 4>, x: vec4<f32>) -> mat4x4<f32> {
    return w[0] * x.x + w[1] * x.y + w[2] * x.z + w[3] * x.w;
}

// The taps of one pair of output pixels (2q, 2q + 1) of a 3-tap row, Winograd F(2, 3): with the
// window d0..d3 of the pair and transformed weights G0 = g0, G1 = (g0 + g1 + g2) / 2,
// G2 = (g0 - g1 + g2) / 2, G3 = g2 (weights_wino in weights.rs),
// y0 = G0 (d0 - d2) + m1 + m2 and y1 = m1 - m2 - G3 (d1 - d3), m1 = G1 (d1 + d2),
// m2 = G2 (d2 - d1): 4 products for 2 pixels instead of 6.
fn wino_mid(y0: ptr<function, mat4x4<f32>>, y1: ptr<function, mat4x4<f32>>,
            g1: array<mat4x4<f32>, 4>, g2: array<mat4x4<f32>, 4>, d1: vec4<f32>, d2: vec4<f32>) {
    let m1 = mul16(g1, d1 + d2);
    let m2 = mul16(g2, d2 - d1);
    *y0 += m1 + m2;
    *y1 += m1 - m2;
}

// The 4 transformed taps of one kernel row (weights at wi, wi + tap, ...) applied to the
// window x of 6 input columns: acc[j] plus the row's share of output pixel j (main_wino).
fn wino_row(acc: array<mat4x4<f32>, 4>, wi: u32, tap: u32, lane: u32, x: array<vec4<f32>, 6>) -> array<mat4x4<f32>, 4> {
    var a0 = acc[0]; var a1 = acc[1]; var a2 = acc[2]; var a3 = acc[3];
    let w0 = bcast16(wld(wi + lane), wld(wi + 8u + lane));
    mac16w(&a0, w0, x[0] - x[2]); mac16w(&a2, w0, x[2] - x[4]);
    let w1 = bcast16(wld(wi + tap + lane), wld(wi + tap + 8u + lane));
    let w2 = bcast16(wld(wi + 2u * tap + lane), wld(wi + 2u * tap + 8u + lane));
    wino_mid(&a0, &a1, w1, w2, x[1], x[2]); wino_mid(&a2, &a3, w1, w2, x[3], x[4]);
    let w3 = bcast16(wld(wi + 3u * tap + lane), wld(wi + 3u * tap + 8u + lane));
    mac16w(&a1, w3, x[3] - x[1]); mac16w(&a3, w3, x[5] - x[3]);
    return array<mat4x4<f32>, 4>(a0, a1, a2, a3);
}

// main for 3 x 3 stride-1 layers through Winograd F(2, 3) along each kernel row, for 4
// output pixels (2 pairs) x 16 channels of one row: each pair takes 4 weight products per input
// channel instead of 6, so a third of the multiplies go (the transforms' adds are on vec4s of
// input, shared by the 16 output channels). Weights: [oc_block][ky][4 transformed taps][ic][16]
// (blocked_wino).
// Why 4 pixels and one row: on lavapipe (AVX-512 machine, 640 x 360, the ten residual convs)
// this took 733-840 ms against 890-932 for 8 pixels and one row, 1,063-1,288 for 8 pixels and
// two rows (each input row loaded once for both), 1,039-1,090 for 4 pixels and two rows and
// 1,065-1,083 for 2 pixels: fewer accumulators (and less code per loop) beat the loads they
// save (README, "Fewer accumulators").
// Dispatch: as main with ceil(out_w / 4) pixel groups per row.
@compute @workgroup_size(64, 1, 1)
fn main_wino(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gid = grid(wid, li);
    let ocb = min(gid.z, p.oc_blocks - 1u);
    if (idle(gid.y)) {
        skip(wid, nwg, li, sid, ocb);
        return;
    }
    let lane = sid % 8u;
    let band_row = gid.y;
    let oy = p.out_row0 + band_row;
    let v0 = i32(gid.x * 4u) - p.pad_left;
    var a = array<mat4x4<f32>, 4>();
    let tap = p.in_c * 4u;
    let row = 4u * tap;
    for (var ky = 0u; ky < 3u; ky++) {
        let rb = row_base(oy, ky);
        for (var g = 0u; g < p.in_c / 4u; g++) {
            let n = norm_of(g, lane);
            let x = array<vec4<f32>, 6>(
                ld(col(v0, rb), g, n), ld(col(v0 + 1, rb), g, n), ld(col(v0 + 2, rb), g, n),
                ld(col(v0 + 3, rb), g, n), ld(col(v0 + 4, rb), g, n), ld(col(v0 + 5, rb), g, n));
            a = wino_row(a, (ocb * 3u + ky) * row + g * 16u, tap, lane, x);
        }
    }
    let ox0 = gid.x * 4u;
    if (STATS) {
        // As finish: Welford of the real pixels (without the bias), merged over 8 lanes.
        let count = select(0u, min(4u, p.out_w - min(ox0, p.out_w)), band_row < p.band_rows);
        var n = 0.0;
        var mean = mat4x4<f32>();
        var m2 = mat4x4<f32>();
        welford4(&n, &mean, &m2, a[0], a[1], a[2], a[3], count);
        write_stats(wid, nwg, li, sid, ocb, n, mean, m2);
    }
    if (band_row >= p.band_rows || gid.z >= p.oc_blocks) {
        return;
    }
    store16x4(band_row, ox0, ocb, a[0], a[1], a[2], a[3]);
}

// main_narrow_slide computes two output rows per invocation (16 pixels x 4 channels each): each
// of the K + 1 input rows they read is loaded once and slides under both rows' kernel rows (row
// r0 takes it as kernel row r, row r0 + 1 as kernel row r - 1), (16 + K - 1) (K + 1) input loads
// per channel group for 32 pixels instead of (16 + K - 1) 2K (conv4, 9 x 9: 14 % faster on
// lavapipe). Not done for main: its one 9 x 9 layer (conv1) has 4 input channels, where
// the loads are a small part, and it was no faster.
// Dispatch: ceil(out_w / 16) pixel groups per row, ceil(band_rows / 2) rows.
@compute @workgroup_size(64, 1, 1)
fn main_narrow_slide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sid: u32) {
    let gid = grid(wid, li);
    let ox0 = gid.x * 16u;
    let r0 = gid.y * 2u;
    let ocb = min(gid.z, p.oc_blocks - 1u);
    if (idle(r0)) {
        return;
    }
    let lane = sid % 4u;
    let oy = p.out_row0 + r0;
    let v0 = i32(ox0) - p.pad_left;
    // Column c of a<q> (row r0) and b<q> (row r0 + 1) is output pixel 4q + c (4 channels).
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>(); var b1 = mat4x4<f32>(); var b2 = mat4x4<f32>(); var b3 = mat4x4<f32>();
    for (var r = 0u; r <= K; r++) {
        let rb = row_base(oy, r);
        for (var g = 0u; g < p.in_c / 4u; g++) {
            let n = norm_of(g, lane);
            var x0 = ld(col(v0, rb), g, n); var x1 = ld(col(v0 + 1, rb), g, n);
            var x2 = ld(col(v0 + 2, rb), g, n); var x3 = ld(col(v0 + 3, rb), g, n);
            var x4 = ld(col(v0 + 4, rb), g, n); var x5 = ld(col(v0 + 5, rb), g, n);
            var x6 = ld(col(v0 + 6, rb), g, n); var x7 = ld(col(v0 + 7, rb), g, n);
            var x8 = ld(col(v0 + 8, rb), g, n); var x9 = ld(col(v0 + 9, rb), g, n);
            var x10 = ld(col(v0 + 10, rb), g, n); var x11 = ld(col(v0 + 11, rb), g, n);
            var x12 = ld(col(v0 + 12, rb), g, n); var x13 = ld(col(v0 + 13, rb), g, n);
            var x14 = ld(col(v0 + 14, rb), g, n); var x15 = ld(col(v0 + 15, rb), g, n);
            // Kernel row r of row r0 and r - 1 of row r0 + 1 (clamped where that row does not
            // take this input row; those weights are not used).
            var wa = (ocb * K + min(r, K - 1u)) * K * p.in_c + g * 4u;
            var wb = (ocb * K + max(r, 1u) - 1u) * K * p.in_c + g * 4u;
            for (var kx = 0u; kx < K; kx++) {
                if (r < K) {
                    let mine = wld(wa + lane);
                    let w = mat4x4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
                                        subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
                    mac4(&a0, w, x0, x1, x2, x3); mac4(&a1, w, x4, x5, x6, x7);
                    mac4(&a2, w, x8, x9, x10, x11); mac4(&a3, w, x12, x13, x14, x15);
                }
                if (r > 0u) {
                    let mine = wld(wb + lane);
                    let w = mat4x4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
                                        subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
                    mac4(&b0, w, x0, x1, x2, x3); mac4(&b1, w, x4, x5, x6, x7);
                    mac4(&b2, w, x8, x9, x10, x11); mac4(&b3, w, x12, x13, x14, x15);
                }
                wa += p.in_c;
                wb += p.in_c;
                if (kx + 1u < K) {
                    x0 = x1; x1 = x2; x2 = x3; x3 = x4; x4 = x5; x5 = x6; x6 = x7; x7 = x8;
                    x8 = x9; x9 = x10; x10 = x11; x11 = x12; x12 = x13; x13 = x14; x14 = x15;
                    x15 = ld(col(v0 + i32(kx) + 16, rb), g, n);
                }
            }
        }
    }
    if (gid.z >= p.oc_blocks) {
        return;
    }
    if (r0 < p.band_rows) {
        store_narrow(r0, ox0, ocb, a0); store_narrow(r0, ox0 + 4u, ocb, a1);
        store_narrow(r0, ox0 + 8u, ocb, a2); store_narrow(r0, ox0 + 12u, ocb, a3);
    }
    if (r0 + 1u < p.band_rows) {
        store_narrow(r0 + 1u, ox0, ocb, b0); store_narrow(r0 + 1u, ox0 + 4u, ocb, b1);
        store_narrow(r0 + 1u, ox0 + 8u, ocb, b2); store_narrow(r0 + 1u, ox0 + 12u, ocb, b3);
    }
}
