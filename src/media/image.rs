//! PNG / JPEG still images: decode to RGB8, encode and write atomically.

use std::path::Path;

use image::{ImageFormat, ImageReader};

use super::policy::MediaLimits;
use super::MediaError;
use crate::frame::RgbFrame;

/// Reads a PNG or JPEG (decided by content, not extension) as RGB8.
pub fn read_rgb(path: &Path) -> Result<RgbFrame, MediaError> {
    read_rgb_within(path, None)
}

/// As [`read_rgb`], refusing an image whose header declares a size over `limits` before it is
/// decoded.
pub fn read_rgb_within(path: &Path, limits: Option<&MediaLimits>) -> Result<RgbFrame, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::Read { path: path.to_path_buf(), source: e })?;
    let decode = |reason: String| MediaError::Decode { path: path.to_path_buf(), reason };
    let reader = || ImageReader::new(std::io::Cursor::new(bytes.as_slice())).with_guessed_format().map_err(|e| decode(e.to_string()));
    match reader()?.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(f) => return Err(decode(format!("{f:?} is not supported"))),
        None => return Err(decode("unknown file type".into())),
    }
    if let Some(l) = limits {
        let (w, h) = reader()?.into_dimensions().map_err(|e| decode(e.to_string()))?;
        l.check_size(path, w, h)?;
    }
    let img = reader()?.decode().map_err(|e| decode(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbFrame::new(w, h, img.into_raw()))
}

/// Whether a file is a PNG or JPEG (by its first bytes, not its name).
pub fn looks_like_image(path: &Path) -> bool {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    matches!(image::guess_format(&head[..n]), Ok(ImageFormat::Png | ImageFormat::Jpeg))
}

/// The image format for an output path's extension.
pub fn output_format(path: &Path) -> Result<ImageFormat, MediaError> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => Ok(ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
        _ => Err(MediaError::OutputFormat { path: path.to_path_buf() }),
    }
}

/// Encodes a frame and writes it atomically: to a temporary file beside `path`, then renamed.
/// On error nothing is left under `path` or the temporary name.
pub fn write_rgb(path: &Path, frame: &RgbFrame) -> Result<(), MediaError> {
    let format = output_format(path)?;
    let write = |reason: String| MediaError::Write { path: path.to_path_buf(), reason };
    let mut encoded = Vec::new();
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut encoded),
        &frame.data,
        frame.width,
        frame.height,
        image::ExtendedColorType::Rgb8,
        format,
    )
    .map_err(|e| write(e.to_string()))?;
    super::write_atomic(path, &encoded).map_err(|e| write(e.to_string()))
}
