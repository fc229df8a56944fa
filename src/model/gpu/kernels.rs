//! The kernel registry: one variant per `.wgsl` file in `shaders/`, and a pipeline cache keyed
//! by (kernel, override constants).

use std::collections::HashMap;

/// Every compute kernel. The variant's snake_case name is the shader's file name and its
/// label in timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Conv2d,
    Conv2dSubgroup,
    ConvTranspose2d,
    /// `conv_transpose2d` sharing weights across a subgroup, one row and column parity per
    /// workgroup.
    ConvTranspose2dSubgroup,
    InstanceNormStats,
    InstanceNormFinalize,
    InstanceNormApply,
    /// `instance_norm_apply` four channels per invocation (vec4 loads and stores).
    InstanceNormApply4,
    Rgb8ToF32,
    ToRgb8,
    /// `conv2d` with f16 weights and activations (see `Kernel::half`).
    Conv2dF16,
    Conv2dSubgroupF16,
    ConvTranspose2dF16,
    ConvTranspose2dSubgroupF16,
    InstanceNormStatsF16,
    InstanceNormApplyF16,
    InstanceNormApply4F16,
    /// `rgb8_to_f32` writing f16 activations.
    Rgb8ToF16,
    ToRgb8F16,
    /// Implicit GEMM with workgroup-memory tiles, for K x K layers with 16k input channels.
    Conv2dTiled,
    /// `conv2d_tiled` reading f16 weights and activations (its tiles stay f32).
    Conv2dTiledF16,
}

impl Kernel {
    pub const ALL: [Kernel; 21] = [
        Kernel::Conv2d,
        Kernel::Conv2dSubgroup,
        Kernel::ConvTranspose2d,
        Kernel::ConvTranspose2dSubgroup,
        Kernel::InstanceNormStats,
        Kernel::InstanceNormFinalize,
        Kernel::InstanceNormApply,
        Kernel::InstanceNormApply4,
        Kernel::Rgb8ToF32,
        Kernel::ToRgb8,
        Kernel::Conv2dF16,
        Kernel::Conv2dSubgroupF16,
        Kernel::ConvTranspose2dF16,
        Kernel::ConvTranspose2dSubgroupF16,
        Kernel::InstanceNormStatsF16,
        Kernel::InstanceNormApplyF16,
        Kernel::InstanceNormApply4F16,
        Kernel::Rgb8ToF16,
        Kernel::ToRgb8F16,
        Kernel::Conv2dTiled,
        Kernel::Conv2dTiledF16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Conv2d => "conv2d",
            Kernel::Conv2dSubgroup => "conv2d_subgroup",
            Kernel::ConvTranspose2d => "conv_transpose2d",
            Kernel::ConvTranspose2dSubgroup => "conv_transpose2d_subgroup",
            Kernel::InstanceNormStats => "instance_norm_stats",
            Kernel::InstanceNormFinalize => "instance_norm_finalize",
            Kernel::InstanceNormApply => "instance_norm_apply",
            Kernel::InstanceNormApply4 => "instance_norm_apply4",
            Kernel::Rgb8ToF32 => "rgb8_to_f32",
            Kernel::ToRgb8 => "to_rgb8",
            Kernel::Conv2dF16 => "conv2d_f16",
            Kernel::Conv2dSubgroupF16 => "conv2d_subgroup_f16",
            Kernel::ConvTranspose2dF16 => "conv_transpose2d_f16",
            Kernel::ConvTranspose2dSubgroupF16 => "conv_transpose2d_subgroup_f16",
            Kernel::InstanceNormStatsF16 => "instance_norm_stats_f16",
            Kernel::InstanceNormApplyF16 => "instance_norm_apply_f16",
            Kernel::InstanceNormApply4F16 => "instance_norm_apply4_f16",
            Kernel::Rgb8ToF16 => "rgb8_to_f16",
            Kernel::ToRgb8F16 => "to_rgb8_f16",
            Kernel::Conv2dTiled => "conv2d_tiled",
            Kernel::Conv2dTiledF16 => "conv2d_tiled_f16",
        }
    }

    /// `shaders/<name>.wgsl`.
    pub fn file_name(self) -> String {
        format!("{}.wgsl", self.name())
    }

    /// Whether the shader needs the SUBGROUP feature.
    pub fn needs_subgroups(self) -> bool {
        matches!(self.full(), Kernel::Conv2dSubgroup | Kernel::ConvTranspose2dSubgroup)
    }

    /// Whether the shader needs the SHADER_F16 feature: it is the f16 variant of another.
    pub fn needs_f16(self) -> bool {
        self.full() != self
    }

    /// The f32 kernel an f16 kernel is generated from (`half` read backwards); others are
    /// their own.
    pub fn full(self) -> Kernel {
        Kernel::ALL.into_iter().find(|&k| k != self && k.half() == self).unwrap_or(self)
    }

    /// The variant of a kernel that stores activations (and weights) as f16, generated from
    /// it by `scripts/f16_shaders.py`: same bindings, overrides, layouts and dispatch, with
    /// f16 elements (`array<vec4<f16>>`, `array<f16>`) and f32 arithmetic. The finalize (no
    /// activations) is its own.
    pub fn half(self) -> Kernel {
        match self {
            Kernel::Conv2d => Kernel::Conv2dF16,
            Kernel::Conv2dSubgroup => Kernel::Conv2dSubgroupF16,
            Kernel::ConvTranspose2d => Kernel::ConvTranspose2dF16,
            Kernel::ConvTranspose2dSubgroup => Kernel::ConvTranspose2dSubgroupF16,
            Kernel::InstanceNormStats => Kernel::InstanceNormStatsF16,
            Kernel::InstanceNormApply => Kernel::InstanceNormApplyF16,
            Kernel::InstanceNormApply4 => Kernel::InstanceNormApply4F16,
            Kernel::Rgb8ToF32 => Kernel::Rgb8ToF16,
            Kernel::ToRgb8 => Kernel::ToRgb8F16,
            Kernel::Conv2dTiled => Kernel::Conv2dTiledF16,
            k => k,
        }
    }

    /// Whether the kernel is joined with the conv prelude (`shaders/conv_common.wgsl`).
    pub fn uses_prelude(self) -> bool {
        self.prelude().is_some()
    }

    /// The prelude the kernel is joined with: `conv_common.wgsl`, or for the f16 kernels
    /// `conv_common_f16.wgsl` (f16 activation bindings).
    pub fn prelude(self) -> Option<&'static str> {
        match self.full() {
            Kernel::Conv2d | Kernel::Conv2dSubgroup | Kernel::Conv2dTiled | Kernel::ConvTranspose2d | Kernel::ConvTranspose2dSubgroup => {
                Some(if self.needs_f16() { PRELUDE_F16 } else { PRELUDE })
            }
            _ => None,
        }
    }

    /// What is compiled: the kernel's file, then the prelude when it uses one (WGSL allows
    /// declarations in any order). Directives must come first, so the f16 prelude's own
    /// `enable f16;` (which makes it valid WGSL on its own) is left out: the kernel has it.
    pub fn module_source(self) -> std::borrow::Cow<'static, str> {
        match self.prelude() {
            Some(prelude) => {
                let body: Vec<&str> = prelude.lines().filter(|l| l.trim() != "enable f16;").collect();
                std::borrow::Cow::Owned(format!("{}\n{}", self.source(), body.join("\n")))
            }
            None => std::borrow::Cow::Borrowed(self.source()),
        }
    }

    /// The kernel's own file, `shaders/<name>.wgsl`.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Conv2d => include_str!("../../../shaders/conv2d.wgsl"),
            Kernel::Conv2dSubgroup => include_str!("../../../shaders/conv2d_subgroup.wgsl"),
            Kernel::ConvTranspose2d => include_str!("../../../shaders/conv_transpose2d.wgsl"),
            Kernel::ConvTranspose2dSubgroup => include_str!("../../../shaders/conv_transpose2d_subgroup.wgsl"),
            Kernel::InstanceNormStats => include_str!("../../../shaders/instance_norm_stats.wgsl"),
            Kernel::InstanceNormFinalize => include_str!("../../../shaders/instance_norm_finalize.wgsl"),
            Kernel::InstanceNormApply => include_str!("../../../shaders/instance_norm_apply.wgsl"),
            Kernel::InstanceNormApply4 => include_str!("../../../shaders/instance_norm_apply4.wgsl"),
            Kernel::Rgb8ToF32 => include_str!("../../../shaders/rgb8_to_f32.wgsl"),
            Kernel::ToRgb8 => include_str!("../../../shaders/to_rgb8.wgsl"),
            Kernel::Conv2dF16 => include_str!("../../../shaders/conv2d_f16.wgsl"),
            Kernel::Conv2dSubgroupF16 => include_str!("../../../shaders/conv2d_subgroup_f16.wgsl"),
            Kernel::ConvTranspose2dF16 => include_str!("../../../shaders/conv_transpose2d_f16.wgsl"),
            Kernel::ConvTranspose2dSubgroupF16 => include_str!("../../../shaders/conv_transpose2d_subgroup_f16.wgsl"),
            Kernel::InstanceNormStatsF16 => include_str!("../../../shaders/instance_norm_stats_f16.wgsl"),
            Kernel::InstanceNormApplyF16 => include_str!("../../../shaders/instance_norm_apply_f16.wgsl"),
            Kernel::InstanceNormApply4F16 => include_str!("../../../shaders/instance_norm_apply4_f16.wgsl"),
            Kernel::Rgb8ToF16 => include_str!("../../../shaders/rgb8_to_f16.wgsl"),
            Kernel::ToRgb8F16 => include_str!("../../../shaders/to_rgb8_f16.wgsl"),
            Kernel::Conv2dTiled => include_str!("../../../shaders/conv2d_tiled.wgsl"),
            Kernel::Conv2dTiledF16 => include_str!("../../../shaders/conv2d_tiled_f16.wgsl"),
        }
    }
}

/// The helpers and declarations shared by the conv2d kernels: valid WGSL on its own.
pub const PRELUDE: &str = include_str!("../../../shaders/conv_common.wgsl");
/// Its file in `shaders/`.
pub const PRELUDE_FILE: &str = "conv_common.wgsl";
/// The prelude of the f16 convolution kernels: `conv_common.wgsl` with f16 activation bindings,
/// generated by `scripts/f16_shaders.py`.
pub const PRELUDE_F16: &str = include_str!("../../../shaders/conv_common_f16.wgsl");
/// Its file in `shaders/`.
pub const PRELUDE_F16_FILE: &str = "conv_common_f16.wgsl";

/// Override constants of one specialisation, as (name, value) in a fixed order.
pub(super) type Overrides = Vec<(&'static str, f64)>;

/// Compiled pipelines, one per (kernel, entry point, overrides); modules compiled once per
/// kernel. One cache per device (`GpuContext`), shared by all its plans.
pub(crate) struct PipelineCache {
    /// Compile modules without naga's runtime checks (see `GpuOptions::checked_shaders`).
    trusted: bool,
    modules: HashMap<Kernel, wgpu::ShaderModule>,
    pipelines: HashMap<(Kernel, &'static str, Vec<(&'static str, u64)>), wgpu::ComputePipeline>,
}

impl PipelineCache {
    pub fn new(trusted: bool) -> Self {
        Self { trusted, modules: HashMap::new(), pipelines: HashMap::new() }
    }

    /// Number of pipelines compiled.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    /// The pipeline for `kernel`'s entry point `entry` (usually "main") specialised with `overrides`.
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        kernel: Kernel,
        entry: &'static str,
        overrides: &Overrides,
    ) -> wgpu::ComputePipeline {
        let key = (kernel, entry, overrides.iter().map(|(n, v)| (*n, v.to_bits())).collect());
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let trusted = self.trusted;
        let module = self.modules.entry(kernel).or_insert_with(|| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(kernel.module_source()),
            };
            if trusted {
                // SAFETY: our own shaders, not user input. Every loop is bounded by uniform
                // parameters, and every index stays inside the bound window: tests/golden.rs
                // compares trusted and checked modules bit for bit, with partial tiles and row
                // bands. Storage accesses stay covered by the driver's robust buffer access.
                unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
            } else {
                device.create_shader_module(desc)
            }
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name()),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: overrides,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.pipelines.insert(key, pipeline.clone());
        pipeline
    }
}
