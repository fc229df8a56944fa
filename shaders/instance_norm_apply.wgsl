// instance_norm_apply: y = a[c] * x + b[c], then optionally ReLU, then optionally + residual,
// in place over an HWC f32 band window (norm + activation + skip connection in one pass).
//
// Bindings (group 0):
//   0 params   uniform    ApplyParams
//   1 coef     storage    read        vec2 (a, b) per channel (from instance_norm_finalize)
//   2 x        storage    read_write  HWC f32 band window (starts on a row boundary)
//   3 residual storage    read        HWC f32 band window of the skip input (unused without RESIDUAL)
// Overrides: RELU, RESIDUAL.
// Dispatch: 1-D over `count` elements, 256 per workgroup, folded into (x, y) workgroups.

struct ApplyParams {
    channels: u32, count: u32, shift: u32, residual_shift: u32,
}

override RELU: bool = false;
override RESIDUAL: bool = false;

@group(0) @binding(0) var<uniform> p: ApplyParams;
@group(0) @binding(1) var<storage, read> coef: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.count) {
        return;
    }
    let ab = coef[i % p.channels];
    var v = ab.x * x[p.shift + i] + ab.y;
    if (RELU) {
        v = max(v, 0.0);
    }
    if (RESIDUAL) {
        v += residual[p.residual_shift + i];
    }
    x[p.shift + i] = v;
}
