// instance_norm_apply: y = a[c] * x + b[c], then optionally ReLU, then optionally + residual,
// in place over an HWC band window (norm + activation + skip connection in one pass), in f32
// arithmetic on values stored as `st` (the precision prelude joined before this file).
//
// Bindings (group 0):
//   0 params   uniform    ApplyParams
//   1 coef     storage    read        vec2 (a, b) per channel (from instance_norm_finalize)
//   2 x        storage    read_write  HWC st band window (starts on a row boundary)
//   3 residual storage    read        HWC st band window of the skip input (unused without RESIDUAL)
// Overrides: RELU, RESIDUAL.
// Dispatch: 1-D over `count` elements, 256 per workgroup, folded into (x, y) workgroups.

struct ApplyParams {
    channels: u32, count: u32, shift: u32, residual_shift: u32,
}

override RELU: bool = false;
override RESIDUAL: bool = false;

@group(0) @binding(0) var<uniform> p: ApplyParams;
@group(0) @binding(1) var<storage, read> coef: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<st>;
@group(0) @binding(3) var<storage, read> residual: array<st>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.count) {
        return;
    }
    let ab = coef[i % p.channels];
    var v = ab.x * from_st(x[p.shift + i]) + ab.y;
    if (RELU) {
        v = max(v, 0.0);
    }
    if (RESIDUAL) {
        v += from_st(residual[p.residual_shift + i]);
    }
    x[p.shift + i] = to_st(v);
}
