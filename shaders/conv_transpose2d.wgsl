// conv_transpose2d: TensorFlow conv2d_transpose with stride 2 and 'SAME' output size (2H x 2W)
// over an HWC activation, register blocked, written as a gather:
//   y[r, s, o] = sum over (dy, dx, c) with r = 2i + dy, s = 2j + dx of x[i, j, c] * w[c, o, dy, dx]
// Each invocation computes 16 output channels for 8 output pixels of one row that share a
// column parity, so the taps that reach them are known per invocation and the rest skipped.
//
// Bindings (group 0): as conv2d.wgsl (0 params, 1 input, 3 bias, 4 output and the override K
// in the prelude conv_common.wgsl, joined before this file at load time; its ld, mac16 and
// store16 are used here, ld with the identity norm: a transposed conv takes none), plus:
//   2 weights storage  read st4 [oc_block][ky][kx][ic][16] (`st`: the precision prelude)
// Overrides: K (kernel size).
// Dispatch: workgroups (ceil(groups / tw), ceil(band_rows / th), 2 * oc_blocks) with groups =
//   ceil(ceil(out_w / 2) / 8), th = 64 / tw, tw = tile_w (the prelude's `grid`);
//   z = 2 * oc_block + parity.

@group(0) @binding(2) var<storage, read> weights: array<st4>;

// Offset (vec4s) of the input pixel that output column `s` reads at tap column `kx`, or -1.
fn t_offset(s: u32, kx: u32, row_base: i32) -> i32 {
    let d = i32(s) - i32(kx);
    let ix = d / 2;
    return select(-1, row_base + ix * i32(p.in_c / 4u), d >= 0 && ix < i32(p.in_w) && s < p.out_w);
}

fn w16(i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(from_st4(weights[i]), from_st4(weights[i + 1u]), from_st4(weights[i + 2u]), from_st4(weights[i + 3u]));
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let gid = grid(wid, li);
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
    let n = Norm(vec4<f32>(1.0), vec4<f32>(0.0));
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
            let o0 = t_offset(s0, kx, rb); let o1 = t_offset(s0 + 2u, kx, rb);
            let o2 = t_offset(s0 + 4u, kx, rb); let o3 = t_offset(s0 + 6u, kx, rb);
            let o4 = t_offset(s0 + 8u, kx, rb); let o5 = t_offset(s0 + 10u, kx, rb);
            let o6 = t_offset(s0 + 12u, kx, rb); let o7 = t_offset(s0 + 14u, kx, rb);
            var wi = ((ocb * K + ky) * K + kx) * tap;
            for (var g = 0u; g < p.in_c / 4u; g++) {
                let w0 = w16(wi); let w1 = w16(wi + 4u); let w2 = w16(wi + 8u); let w3 = w16(wi + 12u);
                wi += 16u;
                mac16(&a0, w0, w1, w2, w3, ld(o0, g, n)); mac16(&a1, w0, w1, w2, w3, ld(o1, g, n));
                mac16(&a2, w0, w1, w2, w3, ld(o2, g, n)); mac16(&a3, w0, w1, w2, w3, ld(o3, g, n));
                mac16(&a4, w0, w1, w2, w3, ld(o4, g, n)); mac16(&a5, w0, w1, w2, w3, ld(o5, g, n));
                mac16(&a6, w0, w1, w2, w3, ld(o6, g, n)); mac16(&a7, w0, w1, w2, w3, ld(o7, g, n));
            }
        }
    }
    store16(band_row, s0, ocb, a0); store16(band_row, s0 + 2u, ocb, a1);
    store16(band_row, s0 + 4u, ocb, a2); store16(band_row, s0 + 6u, ocb, a3);
    store16(band_row, s0 + 8u, ocb, a4); store16(band_row, s0 + 10u, ocb, a5);
    store16(band_row, s0 + 12u, ocb, a6); store16(band_row, s0 + 14u, ocb, a7);
}
