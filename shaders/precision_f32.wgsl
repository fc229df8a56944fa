// precision_f32: the precision prelude of f32 plans. Every kernel is loaded as this file (or
// precision_f16.wgsl), then its op's prelude where it has one (conv_common.wgsl), then the
// kernel's own file, joined by plain concatenation (`Kernel::module_source`). It goes first
// because the f16 prelude starts with a directive. Valid WGSL on its own.
//
// What it declares, with the same names and signatures as precision_f16.wgsl:
//   st, st4        the element type of stored activations and weights (storage buffers), and
//                  its vec4: f32 here
//   from_st(4)     a stored value as f32, for arithmetic (which is f32 in both precisions)
//   to_st(4)       an f32 result as the stored type, for a store
// Here the helpers are the identity.

alias st = f32;
alias st4 = vec4<f32>;

fn from_st(v: st) -> f32 {
    return v;
}

fn from_st4(v: st4) -> vec4<f32> {
    return v;
}

fn to_st(v: f32) -> st {
    return v;
}

fn to_st4(v: vec4<f32>) -> st4 {
    return v;
}
