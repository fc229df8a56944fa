// instance_norm_finalize: merges the partial Welford triples of every chunk into per-channel
// affine coefficients, folding the learned scale and shift in:
//   a = scale / sqrt(var + eps),  b = shift - mean * a   (biased variance, eps inside the root)
//
// Bindings (group 0):
//   0 params   uniform   FinalizeParams
//   1 partials storage   read        vec4 (count, mean, M2, 0) at [chunk * channels + c]
//   2 scale    storage   read        [channels]
//   3 shift    storage   read        [channels]
//   4 coef     storage   read_write  vec2 (a, b) per channel
// Dispatch: workgroups (ceil(channels / 64), 1, 1).
// All of it is f32 at both precisions (no stored activations): like every kernel it is joined
// after the plan's precision prelude, and uses none of it.

struct FinalizeParams {
    channels: u32, chunks: u32, eps: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: FinalizeParams;
@group(0) @binding(1) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> shift: array<f32>;
@group(0) @binding(4) var<storage, read_write> coef: array<vec2<f32>>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let b = partials[k * p.channels + c];
        let total = n + b.x;
        if (b.x == 0.0) {
            continue;
        }
        let d = b.y - mean;
        mean += d * (b.x / total);
        m2 += b.z + d * d * (n * b.x / total);
        n = total;
    }
    let var_biased = m2 / max(n, 1.0);
    let a = scale[c] / sqrt(var_biased + p.eps);
    coef[c] = vec2<f32>(a, shift[c] - mean * a);
}
