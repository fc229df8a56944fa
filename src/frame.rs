//! Record types that flow between stages. Depends on nothing else in the crate.

/// An 8-bit RGB image, row-major, 3 bytes per pixel, no row padding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * 3);
        Self { width, height, data }
    }

    /// A deterministic test card: smooth gradients with some edges, so no layer sees constants.
    pub fn test_card(width: u32, height: u32) -> Self {
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                let checker = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 0 };
                data.push(((x * 255 / width.max(1)) as u8).saturating_add(checker));
                data.push((y * 255 / height.max(1)) as u8);
                data.push((((x + y) * 7) % 256) as u8);
            }
        }
        Self::new(width, height, data)
    }
}

/// Position of a frame in its video: 0, 1, 2, ... in presentation order.
pub type FrameIdx = u64;

/// One frame of a video or image sequence on its way through the stages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    pub index: FrameIdx,
    /// Presentation timestamp in the source's time base (kept, never invented).
    pub pts: i64,
    /// How long the frame is shown, in the same time base (0 when unknown).
    pub duration: i64,
    pub image: RgbFrame,
    /// How the frame was styled (for job logs); default until it is.
    #[serde(default)]
    pub timing: FrameTiming,
}

/// Where and how long a frame was styled.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameTiming {
    /// The dataflow worker that styled it.
    pub worker: u32,
    /// GPU wall time of its batch divided by the batch's frames, in ms.
    pub gpu_ms: f32,
    /// Attempts it took (1: no retry).
    pub attempts: u32,
}

/// A rational number (time bases, frame rates), as ffmpeg writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub num: i32,
    pub den: i32,
}

impl Rate {
    pub fn new(num: i32, den: i32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            self.num as f64 / self.den as f64
        }
    }

    /// Parses `25`, `29.97` or `30000/1001`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let r = if let Some((n, d)) = s.split_once('/') {
            Self::new(n.trim().parse().ok()?, d.trim().parse().ok()?)
        } else if let Ok(n) = s.parse::<i32>() {
            Self::new(n, 1)
        } else {
            let f: f64 = s.parse().ok()?;
            Self::new((f * 1000.0).round() as i32, 1000)
        };
        (r.num > 0 && r.den > 0).then_some(r)
    }
}

/// What a frame source knows about its frames before reading them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    /// Time base of `Frame::pts`.
    pub time_base: Rate,
    /// Average frame rate (a hint for encoders; timing comes from the pts).
    pub frame_rate: Rate,
    /// Frame count when the container states it or it can be estimated (progress, checks).
    pub frames: Option<u64>,
    /// Whether `frames` is the container's own count (then fewer decoded frames is an error).
    pub frames_exact: bool,
}
