//! What a job asks for besides its input and its model, and the one place that says which of it
//! makes an output "the same": the done identity a manifest records and the done check compares.

use std::collections::BTreeMap;

use crate::media::video_out::EncodeSettings;
use crate::model::gpu::Precision;

/// Everything besides input and weights that shapes a job's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How a video output is encoded.
    pub encode: EncodeSettings,
    /// Quality of JPEG frames written back as frames.
    pub jpeg_quality: u8,
    /// The precision asked for (`auto` is recorded as asked, not as resolved).
    pub precision: Precision,
    /// The network description's name (`transformnet-tf`, ...).
    pub network: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            encode: EncodeSettings::default(),
            jpeg_quality: 90,
            precision: Precision::default(),
            network: "transformnet-tf".into(),
        }
    }
}

/// The two kinds of output, which depend on different settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One video: its encoder settings matter.
    Video,
    /// Frames written back one by one: their JPEG quality and the network matter.
    Frames,
}

impl Settings {
    /// The done identity: the settings a manifest of an `kind` output records. An output made
    /// with other values here is not done. Manifests written before this function existed
    /// recorded exactly these maps, so finished outputs stay finished.
    pub fn identity(&self, kind: OutputKind) -> BTreeMap<String, String> {
        let mut s = match kind {
            OutputKind::Video => self.encode.manifest_settings(),
            OutputKind::Frames => BTreeMap::from([
                ("network".to_string(), self.network.clone()),
                ("jpeg_quality".to_string(), self.jpeg_quality.to_string()),
            ]),
        };
        s.insert("precision".into(), self.precision.name().into());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_and_frame_identities_name_what_shapes_each() {
        let s = Settings::default();
        let video: Vec<_> = s.identity(OutputKind::Video).into_keys().collect();
        assert_eq!(video, ["codec", "crf", "precision", "preset"]);
        let frames: Vec<_> = s.identity(OutputKind::Frames).into_keys().collect();
        assert_eq!(frames, ["jpeg_quality", "network", "precision"]);
        let other = Settings { encode: EncodeSettings { crf: 23, ..Default::default() }, ..Settings::default() };
        assert_ne!(s.identity(OutputKind::Video), other.identity(OutputKind::Video));
        assert_eq!(s.identity(OutputKind::Frames), other.identity(OutputKind::Frames), "crf does not shape frames");
    }
}
