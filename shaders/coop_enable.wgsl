// coop_enable: the directive of the cooperative-matrix kernels (conv2d_coop,
// conv_transpose2d_coop): the WGSL extension that declares coop_mat16x16, coopLoadT,
// coopMultiplyAdd and coopStoreT (wgpu feature EXPERIMENTAL_COOPERATIVE_MATRIX; naga refuses the
// directive on a device without it, so no other kernel is joined with this file).
// WGSL puts every directive before the first declaration, so this file is joined first, before
// the precision prelude (precision_f16.wgsl, whose `enable f16;` follows this one), then the op
// preludes and the kernel (`Kernel::module_source`). Plain concatenation, nothing rendered.

enable wgpu_cooperative_matrix;
