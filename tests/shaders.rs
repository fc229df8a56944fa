//! Every WGSL file in shaders/ is registered as a kernel, every kernel has its file, and each
//! one parses and validates with naga (no GPU needed).

use std::collections::BTreeSet;
use std::path::Path;

use stylestream::model::gpu::Kernel;

fn validator() -> naga::valid::Validator {
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
    v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    v
}

#[test]
fn shader_files_and_kernel_registry_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!files.is_empty(), "shaders/ is empty");
    let mut registered: BTreeSet<String> = Kernel::ALL.iter().map(|k| k.file_name()).collect();
    registered.insert(stylestream::model::gpu::PRELUDE_FILE.to_string());
    registered.insert(stylestream::model::gpu::PRELUDE_F16_FILE.to_string());
    let extra: Vec<_> = files.difference(&registered).collect();
    let missing: Vec<_> = registered.difference(&files).collect();
    assert!(extra.is_empty(), "files in shaders/ that are not a registered kernel: {extra:?}");
    assert!(missing.is_empty(), "registered kernels without a file: {missing:?}");
    for k in Kernel::ALL {
        let on_disk = std::fs::read_to_string(dir.join(k.file_name())).unwrap();
        assert_eq!(on_disk, k.source(), "{} differs from the compiled-in source", k.file_name());
    }
    let prelude = std::fs::read_to_string(dir.join(stylestream::model::gpu::PRELUDE_FILE)).unwrap();
    assert_eq!(prelude, stylestream::model::gpu::PRELUDE);
    let prelude = std::fs::read_to_string(dir.join(stylestream::model::gpu::PRELUDE_F16_FILE)).unwrap();
    assert_eq!(prelude, stylestream::model::gpu::PRELUDE_F16);
}

#[test]
fn every_shader_parses_and_validates() {
    for k in Kernel::ALL {
        let src = k.source();
        assert!(
            src.starts_with(&format!("// {}:", k.name())),
            "{} must start with a `// {}: ...` header comment",
            k.file_name(),
            k.name()
        );
        // What is compiled: the kernel, joined with the prelude where it uses it.
        let src = &k.module_source();
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{} does not parse:\n{}", k.file_name(), e.emit_to_string(src)));
        validator()
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} does not validate:\n{}", k.file_name(), e.emit_to_string(src)));
        assert!(module.entry_points.iter().any(|e| e.name == "main"), "{} has no `main`", k.file_name());
    }
}

#[test]
fn the_validator_rejects_a_broken_shader() {
    // The check above can fail: a type error is caught.
    let broken = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    let parsed = naga::front::wgsl::parse_str(broken);
    let valid = parsed.map(|m| validator().validate(&m).is_ok()).unwrap_or(false);
    assert!(!valid);
}

/// The bindings `scripts/f16_shaders.py` converts in each file, with their f32 element type.
fn half_buffers(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "conv_common" => &[("input", "vec4<f32>"), ("output", "f32")],
        "conv2d" | "conv_transpose2d" => &[("weights", "vec4<f32>")],
        // Their weights are a texture of f32 bits (holding f16-rounded values in f16 plans).
        "conv2d_subgroup" | "conv_transpose2d_subgroup" => &[],
        "conv2d_tiled" => &[("weights", "vec4<f32>"), ("input", "vec4<f32>"), ("output", "f32")],
        "instance_norm_stats" => &[("x", "f32"), ("x4", "vec4<f32>")],
        "instance_norm_apply" => &[("x", "f32"), ("residual", "f32")],
        "instance_norm_apply4" => &[("x", "vec4<f32>"), ("residual", "vec4<f32>")],
        "rgb8_to_f32" => &[("dst", "vec4<f32>")],
        "to_rgb8" => &[("src", "f32")],
        other => panic!("{other} has no f16 variant"),
    }
}

/// Every read `name[i]` (not part of a longer identifier) of `line` as `ty(name[i])`.
fn wrap_reads(line: &str, name: &str, ty: &str) -> String {
    let pat = format!("{name}[");
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(&pat) {
        let prev = rest[..i].chars().last().or_else(|| out.chars().last());
        let close = rest[i..].find(']').expect("a closing bracket") + i;
        out.push_str(&rest[..i]);
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push_str(&rest[i..=close]);
        } else {
            out.push_str(&format!("{ty}({})", &rest[i..=close]));
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `scripts/f16_shaders.py`: the f32 kernel with f16 weights and activations. The header line,
/// `enable f16;` before the first declaration, each converted binding's element type with
/// f32 -> f16, every read `b[i]` as `T(b[i])` and every store `b[i] = v;` as `b[i] = T16(v);`.
fn half_of(name: &str, out_name: &str, src: &str) -> String {
    let buffers = half_buffers(name);
    let mut out = vec![format!(
        "// {out_name}: {name}.wgsl with f16 weights and activations (f32 arithmetic); generated by scripts/f16_shaders.py."
    )];
    let mut enabled = false;
    for line in src.split('\n') {
        if !enabled && !line.trim().is_empty() && !line.starts_with("//") {
            out.push("enable f16;".into());
            out.push(String::new());
            enabled = true;
        }
        if line.trim_start().starts_with("//") {
            out.push(line.to_string());
            continue;
        }
        let mut line = line.to_string();
        let mut declared = false;
        for (b, ty) in buffers {
            let decl = format!(" {b}: array<{ty}>;");
            if line.starts_with("@group(") && line.ends_with(&decl) {
                line = line.replace(&decl, &format!(" {b}: array<{}>;", ty.replace("f32", "f16")));
                declared = true;
            }
        }
        if declared {
            out.push(line);
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let store = buffers.iter().find_map(|(b, ty)| {
            let body = line.trim_start();
            let close = body.find(']')?;
            (body.starts_with(&format!("{b}[")) && body[close..].starts_with("] = ") && body.ends_with(';'))
                .then(|| (body[..=close].to_string(), body[close + 4..body.len() - 1].to_string(), ty.replace("f32", "f16")))
        });
        let converted = match store {
            Some((lhs, mut rhs, ty16)) => {
                for (b, ty) in buffers {
                    rhs = wrap_reads(&rhs, b, ty);
                }
                format!("{indent}{lhs} = {ty16}({rhs});")
            }
            None => {
                for (b, ty) in buffers {
                    line = wrap_reads(&line, b, ty);
                }
                line
            }
        };
        out.push(converted);
    }
    out.join("\n")
}

#[test]
fn f16_kernels_are_their_f32_kernels_with_f16_weights_and_activations() {
    let mut halves = 0;
    for k in Kernel::ALL {
        if k.half() == k {
            continue;
        }
        halves += 1;
        let h = k.half();
        assert!(h.needs_f16() && !k.needs_f16());
        assert_eq!(h.needs_subgroups(), k.needs_subgroups());
        assert_eq!(h.uses_prelude(), k.uses_prelude());
        assert!(h.source().contains("enable f16;"));
        assert_eq!(h.source(), half_of(k.name(), h.name(), k.source()), "{} is stale: run scripts/f16_shaders.py", h.file_name());
    }
    assert_eq!(halves, 10, "every kernel that touches activations or weights has an f16 variant");
    use stylestream::model::gpu::{PRELUDE, PRELUDE_F16};
    assert_eq!(PRELUDE_F16, half_of("conv_common", "conv_common_f16", PRELUDE), "conv_common_f16.wgsl is stale");
    // Every activation binding of the f16 kernels is f16: no f32 tensor is left.
    for k in Kernel::ALL.into_iter().filter(|k| k.needs_f16()) {
        let src = k.module_source();
        for b in ["input", "output", "x", "x4", "residual", "dst", "src", "weights"] {
            for ty in ["f32", "vec4<f32>"] {
                assert!(!src.contains(&format!(" {b}: array<{ty}>;")), "{}: {b} is still {ty}", k.name());
            }
        }
    }
}

#[test]
fn the_conv_prelude_is_valid_wgsl_on_its_own_and_shared() {
    use stylestream::model::gpu::{PRELUDE, PRELUDE_FILE};
    assert!(PRELUDE.starts_with("// conv_common:"), "{PRELUDE_FILE} must start with its header comment");
    let module = naga::front::wgsl::parse_str(PRELUDE).unwrap_or_else(|e| panic!("{PRELUDE_FILE}:\n{}", e.emit_to_string(PRELUDE)));
    validator().validate(&module).unwrap_or_else(|e| panic!("{PRELUDE_FILE}:\n{}", e.emit_to_string(PRELUDE)));
    let f16 = stylestream::model::gpu::PRELUDE_F16;
    let module = naga::front::wgsl::parse_str(f16).unwrap_or_else(|e| panic!("conv_common_f16.wgsl:\n{}", e.emit_to_string(f16)));
    validator().validate(&module).unwrap_or_else(|e| panic!("conv_common_f16.wgsl:\n{}", e.emit_to_string(f16)));
    // Its helpers live there only: no conv kernel defines them again.
    for k in Kernel::ALL.into_iter().filter(|k| k.uses_prelude()) {
        for helper in ["fn source(", "fn offset(", "fn ld(", "fn row_base(", "fn grid(", "fn store4(", "struct ConvParams"] {
            assert!(PRELUDE.contains(helper), "{helper} is not in the prelude");
            assert!(!k.source().contains(helper), "{} defines {helper} again", k.file_name());
        }
    }
}
