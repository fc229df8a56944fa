// from_rgb8: unpacks an 8-bit RGB frame (3 bytes per pixel, packed little-endian into u32
// words) into an HWC activation of the network's working size with 4 channels, RGB0 (the
// conv kernels read 4 channels at a time). Pixels beyond the frame's right and bottom edges
// repeat the last column and row (see model::geometry).
//
// Bindings (group 0):
//   0 params uniform   UnpackParams
//   1 src    storage   read        packed RGB bytes, row-major, no row padding
//   2 dst    storage   read_write  HWC st4, dst_w x dst_h (RGB0; `st`: the precision prelude)
// Dispatch: 1-D over dst pixels, 256 per workgroup, folded into (x, y) workgroups.

struct UnpackParams {
    src_w: u32, src_h: u32, dst_w: u32, dst_h: u32,
    scale: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: UnpackParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<st4>;

fn byte_at(i: u32) -> f32 {
    return f32((src[i / 4u] >> ((i % 4u) * 8u)) & 0xffu);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.dst_w * p.dst_h) {
        return;
    }
    let x = min(i % p.dst_w, p.src_w - 1u);
    let y = min(i / p.dst_w, p.src_h - 1u);
    let s = (y * p.src_w + x) * 3u;
    dst[i] = to_st4(vec4<f32>(byte_at(s), byte_at(s + 1u), byte_at(s + 2u), 0.0) * p.scale);
}
