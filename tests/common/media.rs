//! Test media made by independent tools: clips and frames by the ffmpeg CLI, random pictures.

use std::path::Path;
use std::process::Command;

/// Runs `ffmpeg -nostdin -v error -y ARGS` and returns its stdout; panics with ffmpeg's message
/// if it fails.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is required");
    assert!(o.status.success(), "ffmpeg {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A test clip: `frames` frames of an ffmpeg test source (testsrc2 by default) at 64x48 and
/// 25 fps, in H.264 (yuv420p, or yuv444p when a side is odd); optionally with a 440 Hz AAC tone
/// as long as the video, and extra output options.
#[derive(Debug, Clone)]
pub struct Clip {
    source: String,
    size: (u32, u32),
    rate: u32,
    frames: u32,
    audio: bool,
    extra: Vec<String>,
}

impl Clip {
    pub fn new(frames: u32) -> Self {
        Self { source: "testsrc2".into(), size: (64, 48), rate: 25, frames, audio: false, extra: Vec::new() }
    }

    /// Another lavfi source: mandelbrot, rgbtestsrc, ...
    pub fn source(mut self, source: &str) -> Self {
        self.source = source.into();
        self
    }

    pub fn size(mut self, w: u32, h: u32) -> Self {
        self.size = (w, h);
        self
    }

    pub fn rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    pub fn audio(mut self) -> Self {
        self.audio = true;
        self
    }

    /// Output options, last before the path (e.g. `-movflags +faststart`).
    pub fn extra(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Writes the clip to `path` (its directory is made).
    pub fn write(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let (w, h) = self.size;
        let rate = self.rate;
        let odd = w % 2 == 1 || h % 2 == 1;
        // Test sources round odd sizes down to even: render even, then scale to the odd size.
        let source = if odd {
            format!("{}=size={}x{}:rate={rate},scale={w}:{h}", self.source, w + w % 2, h + h % 2)
        } else {
            format!("{}=size={w}x{h}:rate={rate}", self.source)
        };
        let seconds = format!("{}", self.frames as f64 / rate as f64);
        let frames = self.frames.to_string();
        let mut args = vec!["-f", "lavfi", "-i", &source];
        if self.audio {
            // `-t` only: with `-frames:v` as well, ffmpeg 5.1 ends the audio after its first packet.
            args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", &seconds, "-c:a", "aac"]);
        } else {
            args.extend(["-frames:v", &frames]);
        }
        args.extend(["-c:v", "libx264", "-pix_fmt", if odd { "yuv444p" } else { "yuv420p" }]);
        args.extend(self.extra.iter().map(String::as_str));
        let out = path.to_str().unwrap();
        args.push(out);
        ffmpeg(&args);
    }
}

/// `count` PNG frames `001.png`, `002.png`... of testsrc2 at `w`x`h` in `dir` (made).
pub fn png_frames(dir: &Path, count: u32, (w, h): (u32, u32)) {
    std::fs::create_dir_all(dir).unwrap();
    let pattern = dir.join("%03d.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={w}x{h}:rate=25"),
        "-frames:v",
        &count.to_string(),
        pattern.to_str().unwrap(),
    ]);
}

/// Deterministic pseudo-random RGB8 pixels, `w`x`h`.
pub fn random_rgb(w: u32, h: u32, seed: u64) -> Vec<u8> {
    super::random((w * h * 3) as usize, seed, 1.0).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect()
}
