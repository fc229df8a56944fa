//! The output op (`to_rgb8`): the network's output tensor cropped to the frame, transformed
//! (tanh / clamp scaling) and packed to RGB8, its parameters and dispatch.

use bytemuck::{Pod, Zeroable};

use super::build::Builder;
use super::{entry, fold, WG_1D};
use crate::model::description::OutputTransform;
use crate::model::gpu::kernels::Kernel;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct PackParams {
    pub(super) src_w: u32,
    pub(super) dst_w: u32,
    pub(super) dst_h: u32,
    _pad0: u32,
    pub(super) scale: f32,
    pub(super) offset: f32,
    _pad1: [u32; 2],
}

impl Builder<'_> {
    pub(super) fn pack(
        &mut self,
        transform: &OutputTransform,
        out_f32: &wgpu::Buffer,
        out_rgb: &wgpu::Buffer,
        width: u32,
        height: u32,
    ) {
        let t = *self.tensors.last().unwrap_or(&self.tensors[0]);
        // FUNC of to_rgb8.wgsl: 0 none, 1 tanh, 2 sigmoid.
        let (func, scale, offset) = match transform {
            OutputTransform::Tanh { scale, offset } => (1u32, *scale, *offset),
            OutputTransform::Sigmoid { scale, offset } => (2, *scale, *offset),
            OutputTransform::Linear { scale, offset } => (0, *scale, *offset),
            OutputTransform::Clamp => (0, 1.0, 0.0),
        };
        let params = self.uniform(&PackParams {
            src_w: t.shape.w,
            dst_w: width,
            dst_h: height,
            _pad0: 0,
            scale,
            offset,
            _pad1: [0; 2],
        });
        let w = self.window(t, 0, t.shape.h);
        let entries = vec![
            entry(0, params.as_entire_binding()),
            entry(1, self.binding(t, &w)),
            entry(2, out_f32.as_entire_binding()),
            entry(3, out_rgb.as_entire_binding()),
        ];
        let wg = fold((width * height).div_ceil(WG_1D));
        self.push_groups("output:to_rgb8".into(), Kernel::ToRgb8, &vec![("FUNC", func as f64)], vec![(entries, wg)]);
    }
}
