// precision_f16: the precision prelude of f16 plans (feature SHADER_F16). Activations and the
// weights of the storage-buffer conv kernels are stored as f16: half the memory and memory
// traffic of f32. Each stored value is converted to f32 as it is loaded and back to f16 (round
// to nearest even) as it is stored, so all arithmetic (accumulation, statistics, the norm, the
// residual add) stays f32; bias, norm coefficients, statistics and the host-facing outputs are
// f32 bindings at both precisions. Joined first, before the op's prelude and the kernel (see
// precision_f32.wgsl, which declares the same names). Valid WGSL on its own.
//
//   st, st4        f16 and vec4<f16>
//   from_st(4)     f16 -> f32 (exact)
//   to_st(4)       f32 -> f16

enable f16;

alias st = f16;
alias st4 = vec4<f16>;

fn from_st(v: st) -> f32 {
    return f32(v);
}

fn from_st4(v: st4) -> vec4<f32> {
    return vec4<f32>(v);
}

fn to_st(v: f32) -> st {
    return st(v);
}

fn to_st4(v: vec4<f32>) -> st4 {
    return st4(v);
}
