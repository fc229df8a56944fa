// instance_norm_apply4: instance_norm_apply.wgsl four channels at a time, for tensors whose
// channels come in fours: y = a[c] * x + b[c], then optionally ReLU, then optionally + residual,
// in place, with one vec4 load of x (and of the residual) and one vec4 store per invocation
// instead of four scalar ones (lavapipe runs every buffer access as a per-lane loop).
//
// Bindings (group 0):
//   0 params   uniform    ApplyParams (count, shift and residual_shift in values, multiples of 4)
//   1 coef     storage    read        the vec2 (a, b) per channel of instance_norm_finalize read
//                                     as vec4s: [2g] = (a, b) of channels 4g, 4g+1, [2g+1] of
//                                     4g+2, 4g+3
//   2 x        storage    read_write  HWC st band window as st4s (starts on a row boundary)
//   3 residual storage    read        the skip input's band window as st4s (unused without RESIDUAL)
// (`st`: the stored type of the precision prelude joined before this file.)
// Overrides: RELU, RESIDUAL.
// Dispatch: 1-D over count / 4 vec4s, 256 per workgroup, folded into (x, y) workgroups.

struct ApplyParams {
    channels: u32, count: u32, shift: u32, residual_shift: u32,
}

override RELU: bool = false;
override RESIDUAL: bool = false;

@group(0) @binding(0) var<uniform> p: ApplyParams;
@group(0) @binding(1) var<storage, read> coef: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<st4>;
@group(0) @binding(3) var<storage, read> residual: array<st4>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.count / 4u) {
        return;
    }
    let g = i % (p.channels / 4u);
    let lo = coef[2u * g];
    let hi = coef[2u * g + 1u];
    var v = vec4<f32>(lo.xz, hi.xz) * from_st4(x[p.shift / 4u + i]) + vec4<f32>(lo.yw, hi.yw);
    if (RELU) {
        v = max(v, vec4<f32>(0.0));
    }
    if (RESIDUAL) {
        v += from_st4(residual[p.residual_shift / 4u + i]);
    }
    x[p.shift / 4u + i] = to_st4(v);
}
