//! ONNX import against ONNX Runtime: small networks of both TransformNet variants with random
//! weights, built by `tests/onnx/models.py` (the `onnx` Python package), run by stylestream on
//! the GPU and by ONNX Runtime (CPU) on the same input.
//!
//! Tolerance: after the display clamp to [0, 255], |stylestream - ORT| <= `TOL` everywhere
//! (f32 on both sides, different summation orders; measured maximum in the README).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use stylestream::model::gpu::NetworkPlan;
use stylestream::model::onnx;

/// Max |stylestream - ORT| on the clamped output, in 8-bit units (0..255 scale).
const TOL: f32 = 0.01;

fn python() -> String {
    std::env::var("STYLESTREAM_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx").join(name)
}

/// The models of `models.py build`, made once per test binary.
pub fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("onnx-models-{}", std::process::id()));
        let out = Command::new(python()).arg(script("models.py")).arg("build").arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "building the test models needs python3 with onnx, onnxruntime, numpy (`make test` installs requirements-test.txt):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn model(name: &str) -> PathBuf {
    models().join(name)
}

/// A file in this test binary's scratch directory; `name` may start with a per-test folder, so
/// that tests looking for leftover temporaries do not see each other's.
fn tmp(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("onnx-test-{}", std::process::id())).join(name);
    let dir = path.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    path
}

/// ONNX Runtime's output for an RGB8 input, HWC f32.
fn ort(model: &Path, rgb: &[u8], w: u32, h: u32) -> Vec<f32> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let input = tmp(&format!("in-{n}.rgb"));
    std::fs::write(&input, rgb).unwrap();
    let out = tmp(&format!("ort-{n}.f32"));
    let o = Command::new(python())
        .arg(script("models.py"))
        .args([
            "run",
            &model.display().to_string(),
            &input.display().to_string(),
            &w.to_string(),
            &h.to_string(),
            &out.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "onnxruntime failed: {}", String::from_utf8_lossy(&o.stderr));
    read_f32(&out)
}

/// stylestream's output (before the display clamp) for the same input, through the GPU plan.
fn ours(model: &Path, rgb: &[u8], w: u32, h: u32) -> Vec<f32> {
    let (desc, weights) = onnx::load(model).unwrap();
    let plan = NetworkPlan::new(gpu(), &desc, &weights, w, h).unwrap();
    plan.run_with_values(rgb).unwrap().values
}

fn clamped_diff(a: &[f32], b: &[f32]) -> f32 {
    let c = |v: &f32| v.clamp(0.0, 255.0);
    assert_eq!(a.len(), b.len(), "output sizes differ");
    a.iter().zip(b).map(|(x, y)| (c(x) - c(y)).abs()).fold(0.0, f32::max)
}

/// `model` run by stylestream at w x h against ORT running `oracle` (the same network, or
/// its twin with a symbolic input size) on the same input.
fn check(model_name: &str, oracle: &str, w: u32, h: u32) -> f32 {
    let rgb = random_rgb(w, h, 11);
    let want = ort(&model(oracle), &rgb, w, h);
    let got = ours(&model(model_name), &rgb, w, h);
    let diff = clamped_diff(&got, &want);
    let spread = want.iter().fold(0f32, |m, v| m.max(v.clamp(0.0, 255.0)))
        - want.iter().fold(255f32, |m, v| m.min(v.clamp(0.0, 255.0)));
    let inside = want.iter().filter(|v| (1.0..254.0).contains(*v)).count() as f32 / want.len() as f32;
    // Graphs without a Clip: the raw values too (they reach beyond 0..255), relative to their size.
    let raw = if oracle.starts_with("torch_export") { 0.0 } else { max_abs_diff(&got, &want) };
    let size = want.iter().fold(255f32, |m, v| m.max(v.abs()));
    eprintln!("{model_name} at {w}x{h} vs ORT({oracle}): max |diff| {diff} clamped, {raw} raw (max |y| {size}, {:.0} % unsaturated)", inside * 100.0);
    assert!(
        spread > 50.0 && inside > 0.3,
        "{oracle}: the output is nearly constant or saturated; the test would prove little"
    );
    assert!(diff <= TOL, "{model_name} at {w}x{h}: max |stylestream - ORT| = {diff} > {TOL}");
    assert!(raw <= TOL * size / 255.0, "{model_name} at {w}x{h}: max raw |stylestream - ORT| = {raw}");
    diff
}

#[test]
fn zoo_style_torch_model_matches_onnx_runtime() {
    check("torch_zoo.onnx", "torch_zoo.onnx", 64, 48);
    check("torch_zoo.onnx", "torch_zoo.onnx", 32, 24);
}

#[test]
fn torch_export_graph_with_shape_arithmetic_matches_onnx_runtime() {
    check("torch_export.onnx", "torch_export.onnx", 64, 48);
}

#[test]
fn models_with_a_fixed_224_input_run_at_the_frame_size() {
    // ORT cannot run the fixed models at 64x48; their symbolic-size twins (same weights) can.
    check("torch_zoo_224.onnx", "torch_zoo.onnx", 64, 48);
    check("torch_export_224.onnx", "torch_export.onnx", 64, 48);
    let (desc, _) = onnx::load(&model("torch_export_224.onnx")).unwrap();
    let (twin, _) = onnx::load(&model("torch_export.onnx")).unwrap();
    assert_eq!(desc.layers, twin.layers, "the fixed-size graph must import to the same layers");
}

#[test]
fn tensorflow_variant_matches_onnx_runtime() {
    check("tf_same.onnx", "tf_same.onnx", 64, 48);
    // Explicit pads and a ConvTranspose crop written for 64x48, at 64x48 and at 32x24.
    check("tf_fixed_64x48.onnx", "tf_fixed_64x48.onnx", 64, 48);
    check("tf_fixed_64x48.onnx", "tf_same.onnx", 32, 24);
}

#[test]
fn sigmoid_output_transform_matches_onnx_runtime() {
    check("tf_sigmoid.onnx", "tf_sigmoid.onnx", 64, 48);
}

#[test]
fn imported_descriptions_take_input_scale_and_output_from_the_graph() {
    use stylestream::model::description::{OutputTransform, Padding};
    let (tf, _) = onnx::load(&model("tf_same.onnx")).unwrap();
    assert_eq!(tf.output, OutputTransform::Tanh { scale: 150.0, offset: 127.5 });
    assert!(tf.layers.iter().all(|l| l.padding == Padding::Same && l.bias.is_none()));
    assert_eq!(tf.layers.iter().filter(|l| l.residual.is_some()).count(), 2);
    let (export, w) = onnx::load(&model("torch_export.onnx")).unwrap();
    assert_eq!(export.input_scale, 1.0 / 255.0);
    assert_eq!(export.output, OutputTransform::Clamp);
    assert_eq!(export.layers.iter().filter(|l| l.upsample == 2).count(), 2);
    let sha =
        format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(model("torch_export.onnx")).unwrap()));
    assert_eq!(w.sha256, sha, "the weights' sha256 is the .onnx file's");
}

#[test]
fn unsupported_operators_are_listed_with_their_nodes() {
    let input = tmp("unsupported/in.png");
    image::RgbImage::from_raw(16, 16, random_rgb(16, 16, 1)).unwrap().save(&input).unwrap();
    let output = tmp("unsupported/out.png");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        model("unsupported.onnx").to_str().unwrap(),
        "--progress",
        "none",
    ]);
    assert_clean_failure(&o, "LeakyRelu (node `my_leaky_relu`), Softplus (node `my_softplus`)", &output);
}

#[test]
fn broken_graphs_are_refused_with_a_clear_error() {
    for (file, what) in [
        ("cycle.onnx", "cycle"),
        ("missing_initializer.onnx", "conv1.conv2d.weight"),
        ("huge_dims.onnx", "exceed the limit"),
    ] {
        let e = onnx::load(&model(file)).unwrap_err().to_string();
        assert!(e.contains(what), "{file}: {e}");
    }
}

#[test]
fn onnx_and_safetensors_give_identical_outputs_for_the_same_weights() {
    let (w, h) = (64, 48);
    let input = tmp("same-in.png");
    image::RgbImage::from_raw(w, h, random_rgb(w, h, 5)).unwrap().save(&input).unwrap();
    let via_onnx = tmp("same-onnx.png");
    let via_plain = tmp("same-plain.png");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["stylize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--progress", "none"];
        args.extend_from_slice(extra);
        let o = stylestream(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(&via_onnx, &["--model", model("torch_zoo.onnx").to_str().unwrap()]);
    let toml = model("torch_plain.toml");
    run(
        &via_plain,
        &["--model", model("torch_plain.safetensors").to_str().unwrap(), "--network", toml.to_str().unwrap()],
    );
    let (a, b) = (std::fs::read(&via_onnx).unwrap(), std::fs::read(&via_plain).unwrap());
    assert!(a == b, "the PNGs differ");
    // Float outputs too, bit for bit.
    let rgb = random_rgb(w, h, 6);
    let desc = stylestream::model::NetworkDescription::from_file(&toml).unwrap();
    let weights = stylestream::model::Weights::load(&model("torch_plain.safetensors"), &desc).unwrap();
    let plain = NetworkPlan::new(gpu(), &desc, &weights, w, h).unwrap().run_with_values(&rgb).unwrap().values;
    assert!(ours(&model("torch_zoo.onnx"), &rgb, w, h) == plain, "float outputs differ");
    // And the PNG is ORT's output, quantised, within one level.
    let want = ort(&model("torch_zoo.onnx"), &image::open(&input).unwrap().to_rgb8().into_raw(), w, h);
    let got = image::open(&via_onnx).unwrap().to_rgb8().into_raw();
    let level =
        got.iter().zip(&want).map(|(g, o)| (*g as f32 - (o.clamp(0.0, 255.0) + 0.5).floor()).abs()).fold(0.0, f32::max);
    assert!(level <= 1.0, "8-bit output differs from ORT by {level} levels");
}

#[test]
fn converted_models_run_like_the_onnx_file() {
    let out = tmp("converted.safetensors");
    let o = stylestream(&["models", "convert", model("torch_export.onnx").to_str().unwrap(), out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let desc = stylestream::model::NetworkDescription::from_file(&out.with_extension("toml")).unwrap();
    let weights = stylestream::model::Weights::load(&out, &desc).unwrap();
    let rgb = random_rgb(32, 24, 8);
    let plain = NetworkPlan::new(gpu(), &desc, &weights, 32, 24).unwrap().run_with_values(&rgb).unwrap().values;
    assert!(ours(&model("torch_export.onnx"), &rgb, 32, 24) == plain, "converted model differs from the ONNX file");
}

#[test]
fn models_list_shows_architecture_parameters_and_flops() {
    let o = stylestream(&["models", "list", "--dir", models().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("tf_same ")).unwrap_or_else(|| panic!("{text}"));
    let (desc, _) = onnx::load(&model("tf_same.onnx")).unwrap();
    let flops = format!("{:.0} FLOP/px", 2.0 * desc.macs_per_pixel());
    assert!(
        line.contains("onnx")
            && line.contains("52694 params")
            && line.contains(&flops)
            && line.contains("tanh*150+127.5"),
        "{line}"
    );
    assert!(text.contains("unsupported") && text.contains("unusable"), "{text}");
}

/// Mutation fuzzing of the importer: truncations, byte flips, huge varints and length
/// prefixes, spliced chunks, concentrated on the graph's structure (nodes come first in the
/// file, the initializers' float data after). Every input must give Ok or a clear error: no
/// panic, and no input may take long (a hang or a huge allocation would).
#[test]
fn fuzzed_onnx_files_give_errors_not_panics_or_hangs() {
    const INPUTS: usize = 20_000;
    let seeds: Vec<Vec<u8>> = ["torch_export.onnx", "tf_fixed_64x48.onnx", "torch_zoo.onnx"]
        .iter()
        .map(|f| std::fs::read(model(f)).unwrap())
        .collect();
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut next = move |n: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n.max(1) as u64) as usize
    };
    let (mut ok, mut errors, mut slowest) = (0usize, std::collections::BTreeMap::<String, usize>::new(), 0f64);
    let started = std::time::Instant::now();
    for i in 0..INPUTS {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next(3) {
            // Half the mutations land in the first 4 KiB: the nodes and attributes.
            let region = if next(2) == 0 { m.len().min(4096) } else { m.len() };
            let at = next(region.max(1));
            match next(6) {
                0 => m.truncate(at),
                1 => {
                    for _ in 0..1 + next(8) {
                        let j = next(region.max(1)).min(m.len().saturating_sub(1));
                        if let Some(b) = m.get_mut(j) {
                            *b ^= 1 << next(8);
                        }
                    }
                }
                2 => {
                    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
                    m.splice(at.min(m.len())..at.min(m.len()), huge);
                }
                3 => {
                    // A length-delimited field (numbers 1..15) declaring 2^k bytes.
                    let mut field = vec![((1 + next(15)) << 3 | 2) as u8];
                    let mut len = 1u64 << (8 + next(55));
                    while len >= 0x80 {
                        field.push((len as u8 & 0x7f) | 0x80);
                        len >>= 7;
                    }
                    field.push(len as u8);
                    let end = (at + field.len()).min(m.len());
                    m.splice(at.min(m.len())..end, field);
                }
                4 => {
                    let len = next(256);
                    let from = next(m.len().max(1));
                    let chunk: Vec<u8> = m[from.min(m.len())..(from + len).min(m.len())].to_vec();
                    m.splice(at.min(m.len())..at.min(m.len()), chunk);
                }
                _ => {
                    let j = at.min(m.len().saturating_sub(1));
                    if let Some(b) = m.get_mut(j) {
                        *b = [0x00, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12][next(7)];
                    }
                }
            }
        }
        let t = std::time::Instant::now();
        let result = std::panic::catch_unwind(|| onnx::import_bytes(&m));
        slowest = slowest.max(t.elapsed().as_secs_f64());
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                let kind = format!("{e:?}").split([' ', '(', '{']).next().unwrap_or("").to_string();
                *errors.entry(kind).or_default() += 1;
            }
            Err(_) => panic!("input {i} made the importer panic ({} bytes)", m.len()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {INPUTS} inputs in {secs:.1} s (slowest {:.0} ms): {ok} imported, errors {errors:?}",
        slowest * 1e3
    );
    assert!(slowest < 2.0, "one input took {slowest} s");
    assert!(errors.len() >= 3, "the mutations should reach several error kinds: {errors:?}");
}

/// `serve.py` on 127.0.0.1, killed when dropped.
struct Server(std::process::Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(file: &Path) -> Server {
    use std::io::BufRead;
    let mut child =
        Command::new(python()).arg(script("serve.py")).arg(file).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("serve.py printed `{line}`"));
    Server(child, port)
}

#[test]
fn models_fetch_verifies_the_checksum_and_leaves_nothing_behind_on_failure() {
    let file = model("torch_zoo.onnx");
    let bytes = std::fs::read(&file).unwrap();
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let server = serve(&file);
    let dir = tmp("fetch/models");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{}/{p}", server.1);
    let fetch = |name: &str, u: &str, sha: &str| {
        stylestream(&["models", "fetch", name, "--dir", d, "--url", u, "--sha256", sha])
    };
    let nothing_left = |name: &str| {
        assert!(!dir.join(format!("{name}.onnx")).exists(), "{name}.onnx was left behind");
        assert!(partial_files(&dir).is_empty(), "temporaries left: {:?}", partial_files(&dir));
    };

    // Good checksum: the file arrives whole, under NAME.onnx, and is listed and usable.
    let o = fetch("mine", &url("model.onnx"), &sha.to_uppercase());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(dir.join("mine.onnx")).unwrap() == bytes);
    assert!(partial_files(&dir).is_empty());
    let list = stylestream(&["models", "list", "--dir", d]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("mine "), "{}", String::from_utf8_lossy(&list.stdout));

    // Bad checksum: refused, nothing left.
    let o = fetch("bad", &url("model.onnx"), &"0".repeat(64));
    assert_clean_failure(&o, "sha256 mismatch", &dir.join("bad.onnx"));
    nothing_left("bad");

    // The server closes the connection half way: refused, nothing left.
    let o = fetch("cut", &url("cut.onnx"), &sha);
    assert!(!o.status.success(), "an interrupted transfer was accepted");
    assert!(stderr(&o).contains("transfer interrupted"), "{}", stderr(&o));
    nothing_left("cut");

    // 404, a malformed --sha256, an unknown zoo name, a zoo model without a pin.
    assert_clean_failure(&fetch("gone", &url("missing"), &sha), "404", &dir.join("gone.onnx"));
    assert_clean_failure(&fetch("x", &url("model.onnx"), "abc"), "64 hexadecimal", &dir.join("x.onnx"));
    let o = stylestream(&["models", "fetch", "starry-night", "--dir", d]);
    assert_clean_failure(&o, "mosaic, candy, rain-princess, udnie, pointilism", &dir.join("starry-night.onnx"));
    let o = stylestream(&["models", "fetch", "candy", "--dir", d]);
    assert_clean_failure(&o, "no pinned sha256", &dir.join("candy.onnx"));
}
