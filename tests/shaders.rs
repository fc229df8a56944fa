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
    let registered: BTreeSet<String> = Kernel::ALL.iter().map(|k| k.file_name()).collect();
    let extra: Vec<_> = files.difference(&registered).collect();
    let missing: Vec<_> = registered.difference(&files).collect();
    assert!(extra.is_empty(), "files in shaders/ that are not a registered kernel: {extra:?}");
    assert!(missing.is_empty(), "registered kernels without a file: {missing:?}");
    for k in Kernel::ALL {
        let on_disk = std::fs::read_to_string(dir.join(k.file_name())).unwrap();
        assert_eq!(on_disk, k.source(), "{} differs from the compiled-in source", k.file_name());
    }
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
