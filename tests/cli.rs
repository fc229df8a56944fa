//! The command line as a user runs it: golden results, one-line errors, no partial outputs.

mod common;

use std::path::Path;

use common::*;

/// A safetensors file with the given (name, shape, f32 data) tensors.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let len = values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn stylize_writes_the_golden_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cat.png");
    let input = golden("input_64x48.png");
    let o = stylestream(&["stylize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "scream"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stylestream::media::image::read_rgb(&out).unwrap();
    let want = stylestream::media::image::read_rgb(&golden("scream_64x48.png")).unwrap();
    assert_eq!((got.width, got.height), (64, 48));
    let level = got.data.iter().zip(&want.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(level <= 1, "differs from golden by {level} levels");
}

#[test]
fn precision_flows_to_stylize_and_bench() {
    // bench: auto is f32 on lavapipe (a CPU adapter); f16 when asked (lavapipe has SHADER_F16).
    let precision = |extra: &[&str]| {
        let mut args = vec!["bench", "--model", "udnie", "--size", "64x48", "--frames", "1", "--json"];
        args.extend(extra);
        let o = stylestream(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
        (v["precision"].as_str().unwrap().to_string(), v["kernels"].to_string())
    };
    // (A kernel's label is its file's name at either precision; the precision is reported apart.)
    let (auto, auto_kernels) = precision(&[]);
    assert_eq!(auto, "f32");
    assert!(auto_kernels.contains("conv2d"), "{auto_kernels}");
    assert_eq!(precision(&["--precision", "f32"]).0, "f32");
    let (half, half_kernels) = precision(&["--precision", "f16"]);
    assert_eq!(half, "f16");
    assert!(half_kernels.contains("conv2d"), "{half_kernels}");
    let o = stylestream(&["bench", "--model", "udnie", "--precision", "f8"]);
    assert!(!o.status.success() && stderr(&o).contains("f8"), "{}", stderr(&o));
    // stylize: the f16 image is within the f16 bound of the golden one.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cat.png");
    let input = golden("input_64x48.png");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "scream",
        "--precision",
        "f16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stylestream::media::image::read_rgb(&out).unwrap();
    let want = stylestream::media::image::read_rgb(&golden("scream_64x48.png")).unwrap();
    let d = stylestream::model::gpu::level_diff(&got.data, &want.data);
    assert!(d.max_levels <= 3 && d.mean_levels <= 0.5, "{d:?}");
}

/// `--kernels`: a forced set is used as named; `auto` on a CPU adapter is the fixed default (no
/// timing); `timed` times every candidate once, caches the choice on disk, and the next run
/// takes it from the cache; several workers of one run decide once.
#[test]
fn kernel_sets_are_forced_defaulted_or_timed_once_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kernels.json");
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--model", "udnie", "--size", "32x24", "--frames", "1", "--json"];
        args.extend(extra);
        let o = stylestream_command(&args).env("STYLESTREAM_KERNEL_CACHE", &cache).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
        (v["variant"].as_str().unwrap().to_string(), v["variant_source"].as_str().unwrap().to_string())
    };
    assert_eq!(
        bench(&[]),
        ("subgroup".to_string(), "default".to_string()),
        "auto on lavapipe: the subgroup set, untimed"
    );
    assert!(!cache.exists(), "auto on a CPU adapter times nothing");
    assert_eq!(bench(&["--kernels", "plain-unfused"]), ("plain-unfused".to_string(), "forced".to_string()));
    let (chosen, how) = bench(&["--kernels", "timed"]);
    assert_eq!(how, "timed");
    let entries: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let entry = entries.as_object().unwrap().values().next().unwrap();
    assert_eq!(entry["variant"], chosen.as_str());
    let timed: Vec<&String> = entry["ms"].as_object().unwrap().keys().collect();
    assert_eq!(
        timed,
        ["plain", "plain-unfused", "subgroup", "subgroup-unfused", "tiled", "tiled-128x64", "tiled-32x32"],
        "every candidate timed: {entry}"
    );
    assert_eq!(bench(&["--kernels", "timed"]), (chosen.clone(), "cached".to_string()));
    let o = stylestream(&["bench", "--model", "udnie", "--kernels", "fastest"]);
    assert!(!o.status.success() && stderr(&o).contains("fastest"), "{}", stderr(&o));

    // Two workers at a new size: one decision (the second worker waits for it), one output.
    let input = golden("input_64x48.png");
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..4 {
        std::fs::copy(&input, frames.join(format!("{i:03}.png"))).unwrap();
    }
    let out = dir.path().join("styled/");
    let o = stylestream_command(&[
        "stylize",
        frames.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
        "--kernels",
        "timed",
        "--progress",
        "none",
    ])
    .env("STYLESTREAM_KERNEL_CACHE", &cache)
    .env("STYLESTREAM_LOG", "info")
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("kernels chosen by timing").count(), 1, "{}", stderr(&o));
    let styled: Vec<Vec<u8>> = (0..4).map(|i| std::fs::read(out.join(format!("{i:03}.png"))).unwrap()).collect();
    assert!(styled.iter().all(|s| s == &styled[0]), "the workers used different kernel sets");
}

#[test]
fn stylize_keeps_odd_sizes_and_writes_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.png");
    let frame = stylestream::frame::RgbFrame::test_card(37, 23);
    stylestream::media::image::write_rgb(&odd, &frame).unwrap();
    let out = dir.path().join("odd-styled.jpg");
    let o = stylestream(&["stylize", odd.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "wave"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stylestream::media::image::read_rgb(&out).unwrap();
    assert_eq!((got.width, got.height), (37, 23));
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let o = out.to_str().unwrap();
    let input = golden("input_64x48.png");
    let input = input.to_str().unwrap();

    let missing = dir.path().join("missing.png");
    let r = stylestream(&["stylize", missing.to_str().unwrap(), "-o", o, "--model", "udnie"]);
    assert_clean_failure(&r, "missing.png", &out);

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "this is not an image").unwrap();
    let r = stylestream(&["stylize", text.to_str().unwrap(), "-o", o, "--model", "udnie"]);
    assert_clean_failure(&r, "notes.png", &out);

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(models_dir().join("udnie.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let r = stylestream(&["stylize", input, "-o", o, "--model", truncated.to_str().unwrap()]);
    assert_clean_failure(&r, "truncated.safetensors", &out);

    // A model whose conv2 kernel is 3x2 instead of 3x3: the message names the tensor.
    let desc = tf();
    let weights = style("udnie");
    let mut tensors = Vec::new();
    for l in &desc.layers {
        tensors.push((l.weight.clone(), l.weight_shape().to_vec(), weights.get(&l.weight).to_vec()));
        let n = l.norm.as_ref().unwrap();
        tensors.push((n.scale.clone(), vec![l.out_channels as usize], weights.get(&n.scale).to_vec()));
        tensors.push((n.shift.clone(), vec![l.out_channels as usize], weights.get(&n.shift).to_vec()));
    }
    let mut bad = tensors.clone();
    let conv2 = bad.iter_mut().find(|(n, _, _)| n == "conv2.weight").unwrap();
    conv2.1[3] = 2;
    conv2.2.truncate(conv2.1.iter().product());
    let bad_shape = dir.path().join("bad-shape.safetensors");
    write_safetensors(&bad_shape, &bad);
    let r = stylestream(&["stylize", input, "-o", o, "--model", bad_shape.to_str().unwrap()]);
    assert_clean_failure(&r, "conv2.weight", &out);
    assert!(stderr(&r).contains("[64, 32, 3, 3]"), "{}", stderr(&r));

    let missing_tensor = dir.path().join("no-in6.safetensors");
    tensors.retain(|(n, _, _)| n != "in6.scale");
    write_safetensors(&missing_tensor, &tensors);
    let r = stylestream(&["stylize", input, "-o", o, "--model", missing_tensor.to_str().unwrap()]);
    assert_clean_failure(&r, "in6.scale", &out);

    let r = stylestream(&["stylize", input, "-o", o, "--model", "no-such-style"]);
    assert_clean_failure(&r, "no-such-style", &out);

    let nowhere = dir.path().join("no/such/dir/out.png");
    let r = stylestream(&["stylize", input, "-o", nowhere.to_str().unwrap(), "--model", "udnie"]);
    assert_clean_failure(&r, "no/such/dir/out.png", &nowhere);

    let bmp = dir.path().join("out.bmp");
    let r = stylestream(&["stylize", input, "-o", bmp.to_str().unwrap(), "--model", "udnie"]);
    assert_clean_failure(&r, "out.bmp", &bmp);
}

#[test]
fn help_lists_the_commands_and_examples() {
    let o = stylestream(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for want in ["stylize", "bench", "adapters", "batch", "serve", "submit", "models", "Examples"] {
        assert!(text.contains(want), "--help lacks `{want}`:\n{text}");
    }
    let o = stylestream(&["stylize", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--model"));
}

#[test]
fn bench_prints_a_json_report_last() {
    let o = stylestream(&["bench", "--model", "udnie", "--size", "64x48", "--frames", "2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.trim_end().lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in ["adapter", "width", "height", "frames", "ms_per_frame", "fps", "gflops"] {
        assert!(v.get(key).is_some(), "missing `{key}` in {last}");
    }
    assert_eq!(v["width"], 64);
    assert_eq!(v["frames"], 2);
    let (ms, fps, gflops) =
        (v["ms_per_frame"].as_f64().unwrap(), v["fps"].as_f64().unwrap(), v["gflops"].as_f64().unwrap());
    assert!((ms * fps - 1000.0).abs() < 1.0, "ms/frame and fps disagree");
    assert!((gflops - 2.0 * 126_144.0 * 64.0 * 48.0 / ms / 1e6).abs() < 0.01 * gflops);
    assert!(stdout.contains("adapter"));
}

#[test]
fn serve_refuses_a_missing_config_or_an_unreachable_broker_naming_them() {
    let o = stylestream(&["serve", "--config", "/nonexistent/service.toml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/service.toml"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let text = format!(
        "[broker]\nurl = \"amqp://127.0.0.1:1/%2f\"\nurl_env = \"STYLESTREAM_TEST_UNSET\"\n[storage]\nmedia = \"file://{d}/m\"\n\
         system = \"file://{d}/s\"\n[models]\ndir = \"{d}\"\n",
        d = dir.path().display()
    );
    std::fs::write(&config, text).unwrap();
    let started = std::time::Instant::now();
    let o = stylestream(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("RabbitMQ at amqp://127.0.0.1:1/%2f"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "it should fail fast, not hang");

    // Passwords holding @, : and / and a string that is not a URL: no error text carries them.
    for (url, secret) in [
        ("amqp://user:p@ss:w/rd@127.0.0.1:1/%2f", "p@ss:w/rd"),
        ("amqp://user:se%40cret@127.0.0.1:1/%2f", "se%40cret"),
        ("user:hunter2@127.0.0.1:1", "hunter2"),
        ("amqp://user:hunter3@[::1/%2f", "hunter3"),
    ] {
        let o = stylestream_command(&["serve", "--config", config.to_str().unwrap()])
            .env("STYLESTREAM_TEST_UNSET", url)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(!err.contains(secret), "the password of {url} reached the error: {err}");
        assert!(!err.is_empty());
    }
}

/// `stylestream ARGS` run by `sh` after `umask MASK`, with the test environment.
fn stylestream_with_umask(mask: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_stylestream"))
        .args(args)
        .env("STYLESTREAM_MODELS_DIR", models_dir())
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn outputs_follow_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let input = golden("input_64x48.png");
    let input = input.to_str().unwrap();
    // An image, under two umasks (not a fixed 0644 either).
    for (mask, want) in [("022", 0o644), ("027", 0o640)] {
        let out = dir.path().join(format!("styled-{mask}.png"));
        let o = stylestream_with_umask(mask, &["stylize", input, "-o", out.to_str().unwrap(), "--model", "udnie"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(mode(&out), want, "image under umask {mask}: {:o}", mode(&out));
    }
    // A video, and a directory of frames (the directory and each frame).
    let clip = dir.path().join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .expect("the ffmpeg CLI is required");
    assert!(made.success());
    let video = dir.path().join("styled.mp4");
    let o = stylestream_with_umask(
        "022",
        &["stylize", clip.to_str().unwrap(), "-o", video.to_str().unwrap(), "--model", "udnie"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&video), 0o644, "video: {:o}", mode(&video));
    let frames = dir.path().join("frames");
    let o = stylestream_with_umask(
        "022",
        &["stylize", clip.to_str().unwrap(), "-o", &format!("{}/", frames.display()), "--model", "udnie"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&frames), 0o755, "frame directory: {:o}", mode(&frames));
    let pngs: Vec<_> = std::fs::read_dir(&frames).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(pngs.len(), 2);
    for p in pngs {
        assert_eq!(mode(&p), 0o644, "{}: {:o}", p.display(), mode(&p));
    }
}

#[test]
fn an_output_that_is_the_input_is_refused_and_the_input_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.png");
    std::fs::copy(golden("input_64x48.png"), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let hard = dir.path().join("hard.png");
    std::fs::hard_link(&photo, &hard).unwrap();
    let soft = dir.path().join("soft.png");
    std::os::unix::fs::symlink(&photo, &soft).unwrap();
    let other = dir.path().join("other.png");
    std::fs::copy(golden("input_64x48.png"), &other).unwrap();
    let same = |p: &Path| p.to_str().unwrap().to_string();
    // The same name, another spelling of it, a hard link, a symbolic link, and a second job.
    let dotted = format!("{}/./photo.png", dir.path().display());
    let cases: Vec<Vec<String>> = vec![
        vec![same(&photo), "-o".into(), same(&photo)],
        vec![same(&photo), "-o".into(), dotted],
        vec![same(&photo), "-o".into(), same(&hard)],
        vec![same(&photo), "-o".into(), same(&soft)],
        vec![
            same(&other),
            "-o".into(),
            dir.path().join("fine.mp4").to_str().unwrap().into(),
            "--and".into(),
            format!("{}={}", same(&photo), same(&hard)),
        ],
    ];
    for case in cases {
        let mut args = vec!["stylize"];
        args.extend(case.iter().map(String::as_str));
        args.extend(["--model", "udnie"]);
        let o = stylestream(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{case:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{case:?}: expected one line:\n{err}");
        assert!(err.starts_with("error:") && err.contains("is the input"), "{case:?}: {err}");
        assert_eq!(std::fs::read(&photo).unwrap(), before, "{case:?}: the input was changed");
        assert!(std::fs::symlink_metadata(&soft).unwrap().file_type().is_symlink(), "{case:?}: the link was replaced");
        assert!(partial_files(dir.path()).is_empty(), "{case:?}: temporaries left");
        assert!(!dir.path().join("fine.mp4").exists(), "{case:?}: another job's output was written");
    }
}

/// The cluster transport is unauthenticated and unencrypted: a hostfile naming a public address
/// is refused, naming it and the flag that allows it, before anything is read or written.
#[test]
fn a_hostfile_with_a_public_address_is_refused_without_allow_public_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, "127.0.0.1:7411\n8.8.8.8:7412\n").unwrap();
    let out = dir.path().join("out.png");
    let input = golden("input_64x48.png");
    let r = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--processes",
        "2",
        "--process",
        "0",
        "--hostfile",
        hosts.to_str().unwrap(),
    ]);
    assert_clean_failure(&r, "8.8.8.8:7412", &out);
    assert!(stderr(&r).contains("--allow-public-cluster"), "{}", stderr(&r));
}

/// `stylestream-gpu`, the binary that travels to a lent GPU on its own: `bench --image --save`
/// styles the golden still as the golden says, other commands are refused, and it loads none
/// of ffmpeg's libraries (the full binary does).
#[test]
fn the_gpu_binary_benches_a_still_matching_golden_and_needs_no_ffmpeg_library() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("udnie.png");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stylestream-gpu"))
            .args(args)
            .env("STYLESTREAM_MODELS_DIR", models_dir())
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .unwrap()
    };
    let input = golden("input_64x48.png");
    let out = run(&[
        "bench",
        "--model",
        "udnie",
        "--image",
        input.to_str().unwrap(),
        "--save",
        saved.to_str().unwrap(),
        "--frames",
        "1",
        "--precision",
        "f32",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((report["width"].as_u64(), report["height"].as_u64()), (Some(64), Some(48)));
    let got = stylestream::media::image::read_rgb(&saved).unwrap();
    let want = stylestream::media::image::read_rgb(&golden("udnie_64x48.png")).unwrap();
    let level = got.data.iter().zip(&want.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(got.data.len() == want.data.len() && level <= 1, "saved frame differs from golden by {level} levels");

    let refused = run(&["stylize", input.to_str().unwrap(), "-o", "x.png", "--model", "udnie"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("only `bench`"), "{}", stderr(&refused));

    let libs = |bin: &str| {
        let o = std::process::Command::new("ldd").arg(bin).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(!libs(env!("CARGO_BIN_EXE_stylestream-gpu")).contains("libav"));
    assert!(libs(env!("CARGO_BIN_EXE_stylestream")).contains("libavcodec"), "the oracle: ldd lists libav* when used");
}
