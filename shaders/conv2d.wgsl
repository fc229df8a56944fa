// conv2d: 2-D convolution (cross-correlation) over an HWC activation, register blocked.
// Optional nearest-neighbour upsampling of the input first, zero or reflection padding.
//
// Two entry points, chosen by the number of output channels:
//   main         16 output channels x 8 consecutive output pixels per invocation
//                (accumulator a<p> holds pixel p, its columns are 4 groups of 4 channels)
//   main_narrow   4 output channels x 32 consecutive output pixels per invocation, for layers
//                with few output channels such as the final 32 -> 3 layer
//                (accumulator a<q> column c holds pixel 4q + c, 4 channels)
// Accumulators are named variables, not arrays: lavapipe spills indexed private arrays to memory.
// The input is read as vec4s of 4 consecutive channels (in_c must be a multiple of 4; the
// network input is padded to RGB0): lavapipe turns each buffer load into a per-lane loop,
// so one vec4 load costs about what one f32 load does.
//
// Bindings (group 0): 0 params, 1 input, 3 bias, 4 output, 5 norm_in and the overrides K,
// STRIDE, UPSAMPLE, REFLECT, NORM_IN, NORM_RELU are declared in the prelude conv_common.wgsl
// (joined before this file at load time, after the precision prelude), with the helpers for
// padding, the deferred norm, the grid and stores. Activations and weights are stored as `st`
// (f32 or f16: the precision prelude), arithmetic is f32. This file adds:
//   2 weights storage  read        st4 blocks [oc_block][ky][kx][ic][OCB] with OCB = 16 (main)
//                                  or 4 (main_narrow) channels (see model::gpu::weights)
// Dispatch: workgroups (ceil(groups / tw), ceil(band_rows / th), oc_blocks), groups = ceil(out_w /
// pixels per invocation), th = 64 / tw, tw = tile_w (see `grid`).

@group(0) @binding(2) var<storage, read> weights: array<st4>;

// The norm of channel group g, loaded once per group (not once per tap).
fn norm_of(g: u32) -> Norm {
    if (NORM_IN) {
        let lo = norm_in[2u * g];
        let hi = norm_in[2u * g + 1u];
        return Norm(vec4<f32>(lo.xz, hi.xz), vec4<f32>(lo.yw, hi.yw));
    }
    return Norm(vec4<f32>(1.0), vec4<f32>(0.0));
}

// Weights of 16 output channels for one input channel: column j = channels 4j..4j+3.
fn w16(i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(from_st4(weights[i]), from_st4(weights[i + 1u]), from_st4(weights[i + 2u]), from_st4(weights[i + 3u]));
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let gid = grid(wid, li);
    let ox0 = gid.x * 8u;
    let band_row = gid.y;
    let ocb = gid.z;
    if (ox0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    let tap = p.in_c * 4u;
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        if (rb < 0) {
            continue;
        }
        for (var kx = 0u; kx < K; kx++) {
            let o0 = offset(ox0, kx, rb); let o1 = offset(ox0 + 1u, kx, rb);
            let o2 = offset(ox0 + 2u, kx, rb); let o3 = offset(ox0 + 3u, kx, rb);
            let o4 = offset(ox0 + 4u, kx, rb); let o5 = offset(ox0 + 5u, kx, rb);
            let o6 = offset(ox0 + 6u, kx, rb); let o7 = offset(ox0 + 7u, kx, rb);
            var wi = ((ocb * K + ky) * K + kx) * tap;
            for (var g = 0u; g < p.in_c / 4u; g++) {
                let n = norm_of(g);
                let w0 = w16(wi); let w1 = w16(wi + 4u); let w2 = w16(wi + 8u); let w3 = w16(wi + 12u);
                wi += 16u;
                mac16(&a0, w0, w1, w2, w3, ld(o0, g, n)); mac16(&a1, w0, w1, w2, w3, ld(o1, g, n));
                mac16(&a2, w0, w1, w2, w3, ld(o2, g, n)); mac16(&a3, w0, w1, w2, w3, ld(o3, g, n));
                mac16(&a4, w0, w1, w2, w3, ld(o4, g, n)); mac16(&a5, w0, w1, w2, w3, ld(o5, g, n));
                mac16(&a6, w0, w1, w2, w3, ld(o6, g, n)); mac16(&a7, w0, w1, w2, w3, ld(o7, g, n));
            }
        }
    }
    store16(band_row, ox0, ocb, a0); store16(band_row, ox0 + 1u, ocb, a1);
    store16(band_row, ox0 + 2u, ocb, a2); store16(band_row, ox0 + 3u, ocb, a3);
    store16(band_row, ox0 + 4u, ocb, a4); store16(band_row, ox0 + 5u, ocb, a5);
    store16(band_row, ox0 + 6u, ocb, a6); store16(band_row, ox0 + 7u, ocb, a7);
}

@compute @workgroup_size(64, 1, 1)
fn main_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let gid = grid(wid, li);
    let ox0 = gid.x * 32u;
    let band_row = gid.y;
    let ocb = gid.z;
    if (ox0 >= p.out_w || band_row >= p.band_rows || ocb >= p.oc_blocks) {
        return;
    }
    let oy = p.out_row0 + band_row;
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>(); var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    var a4 = mat4x4<f32>(); var a5 = mat4x4<f32>(); var a6 = mat4x4<f32>(); var a7 = mat4x4<f32>();
    for (var ky = 0u; ky < K; ky++) {
        let rb = row_base(oy, ky);
        if (rb < 0) {
            continue;
        }
        for (var kx = 0u; kx < K; kx++) {
            var wi = ((ocb * K + ky) * K + kx) * p.in_c;
            for (var g = 0u; g < p.in_c / 4u; g++) {
                let n = norm_of(g);
                // Transposed: column i = weights of input channel 4g + i for the 4 outputs;
                // w * x then sums over the 4 input channels of x.
                let w = mat4x4<f32>(from_st4(weights[wi]), from_st4(weights[wi + 1u]),
                                    from_st4(weights[wi + 2u]), from_st4(weights[wi + 3u]));
                wi += 4u;
                step4(&a0, w, ox0, kx, rb, g, n); step4(&a1, w, ox0 + 4u, kx, rb, g, n);
                step4(&a2, w, ox0 + 8u, kx, rb, g, n); step4(&a3, w, ox0 + 12u, kx, rb, g, n);
                step4(&a4, w, ox0 + 16u, kx, rb, g, n); step4(&a5, w, ox0 + 20u, kx, rb, g, n);
                step4(&a6, w, ox0 + 24u, kx, rb, g, n); step4(&a7, w, ox0 + 28u, kx, rb, g, n);
            }
        }
    }
    store_narrow(band_row, ox0, ocb, a0); store_narrow(band_row, ox0 + 4u, ocb, a1);
    store_narrow(band_row, ox0 + 8u, ocb, a2); store_narrow(band_row, ox0 + 12u, ocb, a3);
    store_narrow(band_row, ox0 + 16u, ocb, a4); store_narrow(band_row, ox0 + 20u, ocb, a5);
    store_narrow(band_row, ox0 + 24u, ocb, a6); store_narrow(band_row, ox0 + 28u, ocb, a7);
}
