//! Every kernel set (`KernelChoice`) at both precisions gives exactly the outputs recorded in
//! tests/data/kernel_outputs.json: SHA-256 of the 8-bit frame and of the f32 values before
//! clamping, for the golden 64x48 and 256x144 inputs styled with udnie. A change to the shaders
//! or the plan that is meant to keep the arithmetic must keep these bit for bit.
//!
//! The hashes belong to one adapter and driver (recorded in the file, checked first): lavapipe
//! on Debian 12, where these tests run. After a deliberate change of results, record them again
//! with `STYLESTREAM_RECORD_KERNEL_OUTPUTS=1 cargo test --test kernel_outputs` and say why in the
//! commit.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use sha2::{Digest, Sha256};
use stylestream::media::image::read_rgb;
use stylestream::model::gpu::{GpuContext, GpuOptions, KernelChoice, NetworkPlan, Precision};

/// Every forced kernel set (`Auto` and `Timed` pick one of these).
const CHOICES: [KernelChoice; 7] = [
    KernelChoice::Subgroup,
    KernelChoice::SubgroupUnfused,
    KernelChoice::Plain,
    KernelChoice::PlainUnfused,
    KernelChoice::Tiled,
    KernelChoice::Tiled32x32,
    KernelChoice::Tiled128x64,
];
const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::F16];
const SIZES: [&str; 2] = ["64x48", "256x144"];
const STYLE: &str = "udnie";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Hashes {
    /// SHA-256 of the RGB8 frame.
    rgb: String,
    /// SHA-256 of the f32 output values (little-endian bits).
    values: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Recorded {
    /// Adapter name and driver the hashes were computed on.
    adapter: String,
    driver: String,
    style: String,
    /// When and from what the hashes were recorded.
    note: String,
    /// "<kernel set>/<precision>/<size>" -> hashes.
    outputs: BTreeMap<String, Hashes>,
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kernel_outputs.json")
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn value_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Styles the golden inputs with every kernel set at both precisions, twice each (a set whose
/// two runs differ is not reproducible, and no hash of it could hold).
fn compute(adapter: &mut Option<(String, String)>) -> BTreeMap<String, Hashes> {
    let desc = tf();
    let weights = style(STYLE);
    let inputs: Vec<_> = SIZES.iter().map(|s| (*s, read_rgb(&golden(&format!("input_{s}.png"))).unwrap())).collect();
    let mut out = BTreeMap::new();
    for choice in CHOICES {
        for precision in PRECISIONS {
            let ctx = GpuContext::new(&GpuOptions { precision, kernels: choice, ..Default::default() }).unwrap();
            let a = ctx.adapter();
            adapter.get_or_insert_with(|| (a.name.clone(), a.driver.clone()));
            for (size, input) in &inputs {
                let key = format!("{}/{}/{size}", choice.name(), precision.name());
                let plan = NetworkPlan::new(&ctx, &desc, &weights, input.width, input.height).unwrap();
                assert_eq!(plan.variant().0.name(), choice.name(), "{key}: the plan runs another kernel set");
                assert_eq!(plan.precision(), precision, "{key}");
                let first = plan.run_with_values(&input.data).unwrap();
                let again = plan.run_with_values(&input.data).unwrap();
                assert_eq!(first.rgb, again.rgb, "{key}: two runs of the same plan differ");
                assert_eq!(
                    value_bytes(&first.values),
                    value_bytes(&again.values),
                    "{key}: two runs of the same plan differ"
                );
                let hashes = Hashes { rgb: sha256(&first.rgb), values: sha256(&value_bytes(&first.values)) };
                eprintln!("{key}: rgb {} values {}", &hashes.rgb[..16], &hashes.values[..16]);
                out.insert(key, hashes);
            }
        }
    }
    out
}

#[test]
fn every_kernel_set_at_both_precisions_gives_the_recorded_outputs() {
    let mut adapter = None;
    let got = compute(&mut adapter);
    let (name, driver) = adapter.expect("at least one context was opened");
    assert_eq!(got.len(), CHOICES.len() * PRECISIONS.len() * SIZES.len());
    // The two precisions really are different arithmetic (the comparison below can tell).
    for choice in CHOICES {
        for size in SIZES {
            let [f32, f16] = PRECISIONS.map(|p| &got[&format!("{}/{}/{size}", choice.name(), p.name())]);
            assert_ne!(f32.values, f16.values, "{} {size}: f16 and f32 give the same values", choice.name());
        }
    }
    if std::env::var_os("STYLESTREAM_RECORD_KERNEL_OUTPUTS").is_some_and(|v| v == "1") {
        let recorded = Recorded {
            adapter: name,
            driver,
            style: STYLE.into(),
            note: "recorded with STYLESTREAM_RECORD_KERNEL_OUTPUTS=1 (see tests/kernel_outputs.rs)".into(),
            outputs: got,
        };
        let json = serde_json::to_string_pretty(&recorded).unwrap() + "\n";
        std::fs::create_dir_all(fixture().parent().unwrap()).unwrap();
        std::fs::write(fixture(), json).unwrap();
        eprintln!("recorded {}", fixture().display());
        return;
    }
    let text = std::fs::read_to_string(fixture()).unwrap_or_else(|e| panic!("{}: {e}", fixture().display()));
    let want: Recorded = serde_json::from_str(&text).unwrap();
    assert_eq!(want.style, STYLE);
    assert_eq!(
        (name.as_str(), driver.as_str()),
        (want.adapter.as_str(), want.driver.as_str()),
        "the hashes were recorded on another adapter or driver: compare on that one, or record them again here"
    );
    let keys = |m: &BTreeMap<String, Hashes>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want.outputs), "the recorded cases and the computed ones differ");
    let differ: Vec<String> = got
        .iter()
        .filter(|(k, h)| want.outputs[*k] != **h)
        .map(|(k, h)| format!("{k}: got rgb {} values {}, recorded {:?}", h.rgb, h.values, want.outputs[k]))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} outputs differ from the recorded ones:\n{}",
        differ.len(),
        got.len(),
        differ.join("\n")
    );
}
