//! Every WGSL file in shaders/ is a registered kernel or prelude, every kernel has its file, and
//! each kernel joined with each precision prelude it loads at parses and validates with naga (no
//! GPU needed) with only the capabilities the device gives it, as do the preludes themselves.
//! Each kernel exists once: precision comes only from the precision prelude joined in front of
//! it. (The cooperative-matrix kernels are f16 only; tests/coop.rs also runs spirv-val on them.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use naga::valid::Capabilities;
use stylestream::model::gpu::{
    Kernel, StoragePrecision, CONV_PRELUDE, CONV_PRELUDE_FILE, COOP_ENABLE, COOP_ENABLE_FILE, GEMM_COOP_PRELUDE,
    GEMM_COOP_PRELUDE_FILE,
};

fn validator_with(caps: Capabilities) -> naga::valid::Validator {
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
    v.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    v
}

fn validator() -> naga::valid::Validator {
    validator_with(Capabilities::all())
}

/// The naga capabilities a device created for `k` at `p` gives its shaders (wgpu maps the
/// features stylestream requests: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX).
fn capabilities(k: Kernel, p: StoragePrecision) -> Capabilities {
    let mut caps = Capabilities::empty();
    caps.set(Capabilities::SHADER_FLOAT16, p == StoragePrecision::F16);
    caps.set(Capabilities::SUBGROUP, k.needs_subgroups() || k.needs_coop());
    caps.set(Capabilities::COOPERATIVE_MATRIX, k.needs_coop());
    caps
}

/// Parses and validates `src` (named `what` in failures) with `caps` (parsing too: naga refuses
/// an `enable` directive whose capability is missing).
fn module_with(what: &str, src: &str, caps: Capabilities) -> naga::Module {
    let options = naga::front::wgsl::Options { parse_doc_comments: false, capabilities: caps };
    let module = naga::front::wgsl::Frontend::new_with_options(options)
        .parse(src)
        .unwrap_or_else(|e| panic!("{what} does not parse:\n{}", e.emit_to_string(src)));
    validator_with(caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what} does not validate:\n{}", e.emit_to_string(src)));
    module
}

fn module(what: &str, src: &str) -> naga::Module {
    module_with(what, src, Capabilities::all())
}

/// The registered files of shaders/: every kernel, the op prelude, the precision preludes.
fn registered() -> BTreeMap<String, &'static str> {
    let mut files: BTreeMap<String, &'static str> = Kernel::ALL.iter().map(|k| (k.file_name(), k.source())).collect();
    files.insert(CONV_PRELUDE_FILE.to_string(), CONV_PRELUDE);
    files.insert(GEMM_COOP_PRELUDE_FILE.to_string(), GEMM_COOP_PRELUDE);
    files.insert(COOP_ENABLE_FILE.to_string(), COOP_ENABLE);
    for p in StoragePrecision::ALL {
        files.insert(p.prelude_file(), p.prelude());
    }
    files
}

#[test]
fn shader_files_and_kernel_registry_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let files: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!files.is_empty(), "shaders/ is empty");
    let registered = registered();
    assert_eq!(
        registered.len(),
        Kernel::ALL.len() + 3 + StoragePrecision::ALL.len(),
        "two registered files share a name"
    );
    let names: BTreeSet<String> = registered.keys().cloned().collect();
    let extra: Vec<_> = files.difference(&names).collect();
    let missing: Vec<_> = names.difference(&files).collect();
    assert!(extra.is_empty(), "files in shaders/ that are not a registered kernel or prelude: {extra:?}");
    assert!(missing.is_empty(), "registered kernels or preludes without a file: {missing:?}");
    for (name, source) in &registered {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(on_disk, *source, "{name} differs from the compiled-in source");
        let stem = name.trim_end_matches(".wgsl");
        assert!(source.starts_with(&format!("// {stem}:")), "{name} must start with a `// {stem}: ...` header comment");
    }
}

#[test]
fn every_kernel_at_every_precision_parses_and_validates() {
    let mut checked = 0;
    for k in Kernel::ALL {
        for &p in k.precisions() {
            // What is compiled: (a directive prelude,) precision prelude, op preludes, kernel.
            let src = k.module_source(p);
            let after_directives = src.strip_prefix(k.directive_prelude().unwrap_or_default()).unwrap_or_default();
            assert!(
                after_directives.trim_start_matches('\n').starts_with(p.prelude()),
                "{} at {}: the precision prelude must come first (after the directive prelude)",
                k.name(),
                p.name()
            );
            assert!(src.ends_with(k.source()), "{} at {}: the kernel must come last", k.name(), p.name());
            let what = format!("{} joined with {}", k.file_name(), p.prelude_file());
            // With no more than the device gives it.
            let m = module_with(&what, &src, capabilities(k, p));
            assert!(m.entry_points.iter().any(|e| e.name == "main"), "{} has no `main`", k.file_name());
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * Kernel::ALL.len() - 2, "the two cooperative-matrix kernels load at f16 only");
}

#[test]
fn the_coop_kernels_are_f16_only_and_need_their_capabilities() {
    let coop: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.needs_coop()).collect();
    assert_eq!(coop, [Kernel::Conv2dCoop, Kernel::ConvTranspose2dCoop]);
    for k in Kernel::ALL {
        // Those that multiply cooperative matrices are those registered as needing them.
        assert_eq!(k.needs_coop(), k.module_source(StoragePrecision::F16).contains("coopMultiplyAdd"), "{}", k.name());
        assert_eq!(k.directive_prelude().is_some(), k.needs_coop(), "{}", k.name());
    }
    for k in coop {
        assert_eq!(k.precisions(), [StoragePrecision::F16], "{}", k.name());
        let src = k.module_source(StoragePrecision::F16);
        assert!(src.starts_with(COOP_ENABLE), "{}: the directive goes first", k.name());
        let full = capabilities(k, StoragePrecision::F16);
        for missing in [Capabilities::COOPERATIVE_MATRIX, Capabilities::SUBGROUP, Capabilities::SHADER_FLOAT16] {
            let caps = full - missing;
            let options = naga::front::wgsl::Options { parse_doc_comments: false, capabilities: caps };
            let parsed = naga::front::wgsl::Frontend::new_with_options(options).parse(&src);
            let valid = parsed.map(|m| validator_with(caps).validate(&m).is_ok()).unwrap_or(false);
            assert!(!valid, "{} validates without {missing:?}", k.name());
        }
    }
}

#[test]
fn the_preludes_are_valid_wgsl_on_their_own() {
    // The precision preludes alone, and the op prelude on each of them alone (it uses the stored
    // type `st` they declare, nothing else).
    for p in StoragePrecision::ALL {
        module(&p.prelude_file(), p.prelude());
        module(
            &format!("{CONV_PRELUDE_FILE} joined with {}", p.prelude_file()),
            &format!("{}\n{CONV_PRELUDE}", p.prelude()),
        );
    }
}

#[test]
fn the_validator_rejects_a_broken_shader() {
    // The checks above can fail: a type error is caught.
    let broken = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    let parsed = naga::front::wgsl::parse_str(broken);
    let valid = parsed.map(|m| validator().validate(&m).is_ok()).unwrap_or(false);
    assert!(!valid);
    // And a kernel without its precision prelude (`st` undeclared) does not.
    let alone = naga::front::wgsl::parse_str(Kernel::ToRgb8.source());
    assert!(
        !alone.map(|m| validator().validate(&m).is_ok()).unwrap_or(false),
        "to_rgb8 validates without a precision prelude"
    );
}

/// The storage bindings whose element type is 16-bit in `m`.
fn half_bindings(m: &naga::Module) -> BTreeSet<String> {
    let is_half = |ty: naga::Handle<naga::Type>| {
        let inner = match &m.types[ty].inner {
            naga::TypeInner::Array { base, .. } => &m.types[*base].inner,
            other => other,
        };
        let half = |s: &naga::Scalar| s.kind == naga::ScalarKind::Float && s.width == 2;
        matches!(inner, naga::TypeInner::Scalar(s) | naga::TypeInner::Vector { scalar: s, .. } if half(s))
    };
    m.global_variables
        .iter()
        .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }) && is_half(g.ty))
        .map(|(_, g)| g.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn the_f16_prelude_stores_every_activation_as_f16_and_nothing_else() {
    // Activations (and the storage-buffer weights) are `st`: f16 with the f16 prelude. Bias, norm
    // coefficients, statistics, the weight textures and the host-facing outputs stay f32.
    let expected = |k: Kernel| -> &'static [&'static str] {
        match k {
            Kernel::Conv2d
            | Kernel::Conv2dTiled
            | Kernel::ConvTranspose2d
            | Kernel::Conv2dCoop
            | Kernel::ConvTranspose2dCoop => &["input", "output", "weights"],
            Kernel::Conv2dSubgroup | Kernel::ConvTranspose2dSubgroup => &["input", "output"],
            Kernel::InstanceNormStats => &["x", "x4"],
            Kernel::InstanceNormFinalize => &[],
            Kernel::InstanceNormApply | Kernel::InstanceNormApply4 => &["x", "residual"],
            Kernel::FromRgb8 => &["dst"],
            Kernel::ToRgb8 => &["src"],
        }
    };
    for k in Kernel::ALL {
        let want: BTreeSet<String> = expected(k).iter().map(|s| s.to_string()).collect();
        let half = naga::front::wgsl::parse_str(&k.module_source(StoragePrecision::F16)).unwrap();
        assert_eq!(half_bindings(&half), want, "{}: the f16 bindings", k.name());
        if !k.precisions().contains(&StoragePrecision::F32) {
            continue;
        }
        let full = naga::front::wgsl::parse_str(&k.module_source(StoragePrecision::F32)).unwrap();
        assert!(half_bindings(&full).is_empty(), "{}: an f16 binding at f32", k.name());
    }
}

#[test]
fn precision_lives_in_the_precision_preludes_only() {
    // Both declare the same functions, with the same parameter and result shapes; only the
    // stored type differs.
    let functions = |p: StoragePrecision| -> Vec<(String, usize)> {
        let m = module(&p.prelude_file(), p.prelude());
        m.functions.iter().map(|(_, f)| (f.name.clone().unwrap_or_default(), f.arguments.len())).collect()
    };
    let f32_fns = functions(StoragePrecision::F32);
    assert_eq!(f32_fns, functions(StoragePrecision::F16));
    let names: Vec<&str> = f32_fns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["from_st", "from_st4", "to_st", "to_st4"]);
    for p in StoragePrecision::ALL {
        assert!(p.prelude().contains("alias st = ") && p.prelude().contains("alias st4 = "), "{}", p.prelude_file());
    }
    assert!(StoragePrecision::F16.prelude().contains("\nenable f16;\n"));
    // No kernel or op prelude picks a precision itself: no directive, no f16 type, no second
    // definition of the stored type or its conversions (comments aside).
    let code = |src: &str| -> String {
        src.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
    };
    let mut sources: Vec<(String, &str)> = Kernel::ALL.iter().map(|k| (k.file_name(), k.source())).collect();
    sources.push((CONV_PRELUDE_FILE.to_string(), CONV_PRELUDE));
    sources.push((GEMM_COOP_PRELUDE_FILE.to_string(), GEMM_COOP_PRELUDE));
    for (name, src) in sources {
        let code = code(src);
        for word in ["enable", "f16", "alias st", "fn from_st", "fn to_st"] {
            assert!(!code.contains(word), "{name} contains `{word}`: precision belongs to the precision preludes");
        }
    }
    // The directive prelude holds its directive and nothing else.
    assert_eq!(code(COOP_ENABLE).trim(), "enable wgpu_cooperative_matrix;");
}

#[test]
fn the_conv_prelude_is_shared_not_repeated() {
    assert!(CONV_PRELUDE.starts_with("// conv_common:"), "{CONV_PRELUDE_FILE} must start with its header comment");
    let joined: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.op_preludes().contains(&CONV_PRELUDE)).collect();
    assert_eq!(
        joined,
        [
            Kernel::Conv2d,
            Kernel::Conv2dSubgroup,
            Kernel::Conv2dTiled,
            Kernel::ConvTranspose2d,
            Kernel::ConvTranspose2dSubgroup,
            Kernel::Conv2dCoop,
            Kernel::ConvTranspose2dCoop,
        ]
    );
    // The GEMM prelude comes after it, for the cooperative-matrix kernels, and its helpers live
    // there only.
    for k in Kernel::ALL {
        let gemm = k.op_preludes().contains(&GEMM_COOP_PRELUDE);
        assert_eq!(gemm, k.needs_coop(), "{}", k.name());
        if gemm {
            assert_eq!(k.op_preludes(), [CONV_PRELUDE, GEMM_COOP_PRELUDE], "{}", k.name());
        }
        for helper in ["fn gemm(", "fn epilogue(", "fn partials(", "fn load_b(", "var<workgroup> tile_a"] {
            assert!(GEMM_COOP_PRELUDE.contains(helper), "{helper} is not in the GEMM prelude");
            assert!(!k.source().contains(helper), "{} defines {helper} again", k.file_name());
        }
    }
    // Its helpers live there only: no conv kernel defines them again.
    for k in joined {
        for helper in
            ["fn source(", "fn offset(", "fn ld(", "fn row_base(", "fn grid(", "fn store4(", "struct ConvParams"]
        {
            assert!(CONV_PRELUDE.contains(helper), "{helper} is not in the prelude");
            assert!(!k.source().contains(helper), "{} defines {helper} again", k.file_name());
        }
    }
}

#[test]
fn the_kernels_that_need_subgroups_are_those_that_use_them() {
    for k in Kernel::ALL {
        let uses = k.source().contains("subgroupBroadcast");
        assert_eq!(k.needs_subgroups(), uses, "{}: needs_subgroups() and the source disagree", k.name());
    }
    assert_eq!(Kernel::ALL.iter().filter(|k| k.needs_subgroups()).count(), 2);
}
