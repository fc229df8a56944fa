//! The parameter structs the op files write and the uniform structs the shaders read agree: every
//! named WGSL member sits at the offset of the Rust field of the same name, and the sizes
//! match (naga's reflection of each kernel; no GPU needed).

use super::conv::ConvParams;
use super::norm::{ApplyParams, FinalizeParams, StatsParams};
use super::pack::PackParams;
use super::unpack::UnpackParams;
use crate::model::gpu::Kernel;

/// (Rust struct name, size, named fields with their offsets).
type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

macro_rules! layout {
    ($t:ident { $($f:ident),* $(,)? }) => {
        (stringify!($t), std::mem::size_of::<$t>(), vec![$((stringify!($f), std::mem::offset_of!($t, $f))),*])
    };
}

fn rust_layouts() -> Vec<Layout> {
    vec![
        layout!(ConvParams {
            in_w,
            in_h,
            in_c,
            in_row0,
            out_w,
            out_h,
            out_c,
            out_row0,
            band_rows,
            in_shift,
            out_shift,
            oc_blocks,
            pad_top,
            pad_left,
            stats_base,
            tile_w,
        }),
        layout!(StatsParams { channels, pixels, chunk_pixels, chunk_base, shift }),
        layout!(FinalizeParams { channels, chunks, eps }),
        layout!(ApplyParams { channels, count, shift, residual_shift }),
        layout!(UnpackParams { src_w, src_h, dst_w, dst_h, scale }),
        layout!(PackParams { src_w, dst_w, dst_h, scale, offset }),
    ]
}

#[test]
fn rust_parameter_structs_match_the_shaders_uniform_structs() {
    let layouts = rust_layouts();
    let mut checked = 0;
    for k in Kernel::ALL {
        // The uniform structs are the same at both precisions: the first the kernel loads at.
        let module = naga::front::wgsl::parse_str(&k.module_source(k.precisions()[0]))
            .unwrap_or_else(|e| panic!("{}: {e}", k.file_name()));
        let uniform = module
            .global_variables
            .iter()
            .find(|(_, g)| g.space == naga::AddressSpace::Uniform)
            .unwrap_or_else(|| panic!("{} has no uniform parameters", k.file_name()))
            .1;
        let ty = &module.types[uniform.ty];
        let (naga::TypeInner::Struct { members, span }, Some(name)) = (&ty.inner, ty.name.as_deref()) else {
            panic!("{}: the uniform is not a named struct", k.file_name());
        };
        let (_, size, fields) = layouts
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{}: no Rust struct named {name}", k.file_name()));
        assert_eq!(*span as usize, *size, "{}: {name} is {span} bytes in WGSL, {size} in Rust", k.file_name());
        let mut seen = Vec::new();
        for m in members {
            let Some(member) = m.name.as_deref().filter(|n| !n.starts_with('_')) else { continue };
            let offset = fields
                .iter()
                .find(|(f, _)| *f == member)
                .map(|(_, o)| *o)
                .unwrap_or_else(|| panic!("{}: {name}.{member} has no Rust field", k.file_name()));
            assert_eq!(
                m.offset as usize,
                offset,
                "{}: {name}.{member} at {} in WGSL, {offset} in Rust",
                k.file_name(),
                m.offset
            );
            seen.push(member);
            checked += 1;
        }
        for (f, _) in fields {
            assert!(seen.contains(f), "{}: Rust {name}.{f} is not read by the shader's struct", k.file_name());
        }
    }
    eprintln!("{checked} uniform members of {} kernels checked", Kernel::ALL.len());
    assert!(checked >= 6 * 15, "only {checked} members checked");
}

#[test]
fn a_moved_field_is_caught() {
    // The check can fail: a WGSL struct with two members swapped does not match.
    let src = "struct ApplyParams { count: u32, channels: u32, shift: u32, residual_shift: u32 }\n\
               @group(0) @binding(0) var<uniform> p: ApplyParams;\n@compute @workgroup_size(1) fn main() { _ = p.count; }";
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let (_, _, fields) = rust_layouts().into_iter().find(|(n, _, _)| *n == "ApplyParams").unwrap();
    let ty = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("ApplyParams")).unwrap().1;
    let naga::TypeInner::Struct { members, .. } = &ty.inner else { panic!() };
    let agree =
        members.iter().all(|m| fields.iter().any(|(f, o)| Some(*f) == m.name.as_deref() && *o == m.offset as usize));
    assert!(!agree);
}
