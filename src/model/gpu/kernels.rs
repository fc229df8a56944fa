//! The kernel registry: one variant per op's `.wgsl` file in `shaders/`, what a kernel is
//! compiled as (a precision prelude, its op's prelude, its own file, joined), and a pipeline
//! cache keyed by (kernel, precision, entry point, override constants).

use std::collections::HashMap;

use super::precision::StoragePrecision;

/// Every compute kernel. The variant's snake_case name is the shader's file name and its
/// label in timings. Each is one source, loaded at either precision (`StoragePrecision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Conv2d,
    Conv2dSubgroup,
    /// Implicit GEMM with workgroup-memory tiles, for K x K layers with 16k input channels.
    Conv2dTiled,
    ConvTranspose2d,
    /// `conv_transpose2d` sharing weights across a subgroup, one row and column parity per
    /// workgroup.
    ConvTranspose2dSubgroup,
    /// Implicit GEMM on cooperative matrices (f16 16x16x16, f32 accumulation) for the 3 x 3
    /// layers, stride 1 and 2. f16 only; feature EXPERIMENTAL_COOPERATIVE_MATRIX.
    Conv2dCoop,
    /// `conv_transpose2d` as four phase GEMMs (taps 2x2, 2x1, 1x2, 1x1) on cooperative matrices.
    ConvTranspose2dCoop,
    InstanceNormStats,
    InstanceNormFinalize,
    InstanceNormApply,
    /// `instance_norm_apply` four channels per invocation (vec4 loads and stores).
    InstanceNormApply4,
    /// RGB8 frame in, the network's input tensor out.
    FromRgb8,
    /// The network's output tensor in, RGB8 (and the f32 values) out.
    ToRgb8,
}

impl Kernel {
    pub const ALL: [Kernel; 13] = [
        Kernel::Conv2d,
        Kernel::Conv2dSubgroup,
        Kernel::Conv2dTiled,
        Kernel::ConvTranspose2d,
        Kernel::ConvTranspose2dSubgroup,
        Kernel::Conv2dCoop,
        Kernel::ConvTranspose2dCoop,
        Kernel::InstanceNormStats,
        Kernel::InstanceNormFinalize,
        Kernel::InstanceNormApply,
        Kernel::InstanceNormApply4,
        Kernel::FromRgb8,
        Kernel::ToRgb8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Conv2d => "conv2d",
            Kernel::Conv2dSubgroup => "conv2d_subgroup",
            Kernel::Conv2dTiled => "conv2d_tiled",
            Kernel::ConvTranspose2d => "conv_transpose2d",
            Kernel::ConvTranspose2dSubgroup => "conv_transpose2d_subgroup",
            Kernel::Conv2dCoop => "conv2d_coop",
            Kernel::ConvTranspose2dCoop => "conv_transpose2d_coop",
            Kernel::InstanceNormStats => "instance_norm_stats",
            Kernel::InstanceNormFinalize => "instance_norm_finalize",
            Kernel::InstanceNormApply => "instance_norm_apply",
            Kernel::InstanceNormApply4 => "instance_norm_apply4",
            Kernel::FromRgb8 => "from_rgb8",
            Kernel::ToRgb8 => "to_rgb8",
        }
    }

    /// `shaders/<name>.wgsl`.
    pub fn file_name(self) -> String {
        format!("{}.wgsl", self.name())
    }

    /// Whether the shader shares values across a subgroup (subgroupBroadcast; feature SUBGROUP).
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Kernel::Conv2dSubgroup | Kernel::ConvTranspose2dSubgroup)
    }

    /// Whether the shader multiplies cooperative matrices (features
    /// EXPERIMENTAL_COOPERATIVE_MATRIX and, for `@builtin(subgroup_id)`, SUBGROUP).
    pub fn needs_coop(self) -> bool {
        matches!(self, Kernel::Conv2dCoop | Kernel::ConvTranspose2dCoop)
    }

    /// The precisions the kernel is loaded at: both, but f16 only for the cooperative-matrix
    /// kernels (their operands are f16 matrices).
    pub fn precisions(self) -> &'static [StoragePrecision] {
        if self.needs_coop() {
            &[StoragePrecision::F16]
        } else {
            &StoragePrecision::ALL
        }
    }

    /// The directive prelude joined first, before the precision prelude (WGSL directives come
    /// before every declaration): `shaders/coop_enable.wgsl` for the cooperative-matrix kernels.
    pub fn directive_prelude(self) -> Option<&'static str> {
        self.needs_coop().then_some(COOP_ENABLE)
    }

    /// The op preludes the kernel is joined with, in order: `shaders/conv_common.wgsl` for the
    /// convolutions, then `shaders/gemm_coop.wgsl` for the cooperative-matrix ones.
    pub fn op_preludes(self) -> &'static [&'static str] {
        match self {
            Kernel::Conv2d
            | Kernel::Conv2dSubgroup
            | Kernel::Conv2dTiled
            | Kernel::ConvTranspose2d
            | Kernel::ConvTranspose2dSubgroup => &[CONV_PRELUDE],
            Kernel::Conv2dCoop | Kernel::ConvTranspose2dCoop => &[CONV_PRELUDE, GEMM_COOP_PRELUDE],
            _ => &[],
        }
    }

    /// What is compiled at `precision`: the directive prelude where there is one, the precision
    /// prelude (the f16 one starts with its `enable f16;` directive), the op preludes, then the
    /// kernel's own file, joined by plain concatenation.
    pub fn module_source(self, precision: StoragePrecision) -> String {
        let mut parts: Vec<&str> = self.directive_prelude().into_iter().collect();
        parts.push(precision.prelude());
        parts.extend(self.op_preludes());
        parts.push(self.source());
        parts.join("\n")
    }

    /// The kernel's own file, `shaders/<name>.wgsl`.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Conv2d => include_str!("../../../shaders/conv2d.wgsl"),
            Kernel::Conv2dSubgroup => include_str!("../../../shaders/conv2d_subgroup.wgsl"),
            Kernel::Conv2dTiled => include_str!("../../../shaders/conv2d_tiled.wgsl"),
            Kernel::ConvTranspose2d => include_str!("../../../shaders/conv_transpose2d.wgsl"),
            Kernel::ConvTranspose2dSubgroup => include_str!("../../../shaders/conv_transpose2d_subgroup.wgsl"),
            Kernel::Conv2dCoop => include_str!("../../../shaders/conv2d_coop.wgsl"),
            Kernel::ConvTranspose2dCoop => include_str!("../../../shaders/conv_transpose2d_coop.wgsl"),
            Kernel::InstanceNormStats => include_str!("../../../shaders/instance_norm_stats.wgsl"),
            Kernel::InstanceNormFinalize => include_str!("../../../shaders/instance_norm_finalize.wgsl"),
            Kernel::InstanceNormApply => include_str!("../../../shaders/instance_norm_apply.wgsl"),
            Kernel::InstanceNormApply4 => include_str!("../../../shaders/instance_norm_apply4.wgsl"),
            Kernel::FromRgb8 => include_str!("../../../shaders/from_rgb8.wgsl"),
            Kernel::ToRgb8 => include_str!("../../../shaders/to_rgb8.wgsl"),
        }
    }
}

/// The helpers and declarations shared by the convolution kernels: valid WGSL after either
/// precision prelude.
pub const CONV_PRELUDE: &str = include_str!("../../../shaders/conv_common.wgsl");
/// Its file in `shaders/`.
pub const CONV_PRELUDE_FILE: &str = "conv_common.wgsl";
/// The implicit GEMM on cooperative matrices shared by `conv2d_coop` and `conv_transpose2d_coop`
/// (tiles, depth loop, weights loader, epilogue): valid WGSL after `coop_enable`, the f16
/// precision prelude and `conv_common`, given the two functions each kernel defines.
pub const GEMM_COOP_PRELUDE: &str = include_str!("../../../shaders/gemm_coop.wgsl");
/// Its file in `shaders/`.
pub const GEMM_COOP_PRELUDE_FILE: &str = "gemm_coop.wgsl";
/// The `enable wgpu_cooperative_matrix;` directive, joined first for the cooperative-matrix
/// kernels.
pub const COOP_ENABLE: &str = include_str!("../../../shaders/coop_enable.wgsl");
/// Its file in `shaders/`.
pub const COOP_ENABLE_FILE: &str = "coop_enable.wgsl";

/// Override constants of one specialisation, as (name, value) in a fixed order.
pub(super) type Overrides = Vec<(&'static str, f64)>;

/// A pipeline's identity: kernel, precision, entry point, override constants (as bits).
type PipelineKey = (Kernel, StoragePrecision, &'static str, Vec<(&'static str, u64)>);

/// Compiled pipelines, one per (kernel, precision, entry point, overrides); modules compiled
/// once per (kernel, precision). One cache per device (`GpuContext`), shared by all its plans.
pub(crate) struct PipelineCache {
    /// Compile modules without naga's runtime checks (see `GpuOptions::checked_shaders`).
    trusted: bool,
    modules: HashMap<(Kernel, StoragePrecision), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
}

impl PipelineCache {
    pub fn new(trusted: bool) -> Self {
        Self { trusted, modules: HashMap::new(), pipelines: HashMap::new() }
    }

    /// Number of pipelines compiled.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    /// The pipeline for `kernel`'s entry point `entry` (usually "main") at `precision`,
    /// specialised with `overrides`.
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        kernel: Kernel,
        precision: StoragePrecision,
        entry: &'static str,
        overrides: &Overrides,
    ) -> wgpu::ComputePipeline {
        let key = (kernel, precision, entry, overrides.iter().map(|(n, v)| (*n, v.to_bits())).collect());
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let trusted = self.trusted;
        let label = format!("{} {}", kernel.name(), precision.name());
        let module = self.modules.entry((kernel, precision)).or_insert_with(|| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(kernel.module_source(precision).into()),
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
            label: Some(&label),
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
