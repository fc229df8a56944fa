//! The input op (`from_rgb8`): RGB8 in, the network's input tensor (scaled, padded to the
//! working size, stored at the plan's precision), its parameters and dispatch.

use bytemuck::{Pod, Zeroable};

use super::build::Builder;
use super::{entry, fold, WG_1D};
use crate::model::gpu::kernels::Kernel;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct UnpackParams {
    pub(super) src_w: u32,
    pub(super) src_h: u32,
    pub(super) dst_w: u32,
    pub(super) dst_h: u32,
    pub(super) scale: f32,
    _pad: [u32; 3],
}

impl Builder<'_> {
    pub(super) fn unpack(&mut self, input: &wgpu::Buffer, width: u32, height: u32, scale: f32) {
        let t = self.tensors[0];
        let params = self.uniform(&UnpackParams {
            src_w: width,
            src_h: height,
            dst_w: t.shape.w,
            dst_h: t.shape.h,
            scale,
            _pad: [0; 3],
        });
        let w = self.window(t, 0, t.shape.h);
        let entries = vec![
            entry(0, params.as_entire_binding()),
            entry(1, input.as_entire_binding()),
            entry(2, self.binding(t, &w)),
        ];
        let wg = fold((t.shape.w * t.shape.h).div_ceil(WG_1D));
        self.push_groups("input:from_rgb8".into(), Kernel::FromRgb8, &vec![], vec![(entries, wg)]);
    }
}
