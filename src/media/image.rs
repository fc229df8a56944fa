//! PNG / JPEG still images: decode to RGB8, encode and write atomically; and stills decoded for
//! styling with what is needed to write the styled picture back in the same form (format, bit
//! depth, alpha), upright as their EXIF orientation says.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::policy::MediaLimits;
use super::MediaError;
use crate::frame::{Frame, Rate, RgbFrame, SourceInfo};

/// Reads a PNG or JPEG (decided by content, not extension) as RGB8.
pub fn read_rgb(path: &Path) -> Result<RgbFrame, MediaError> {
    read_rgb_within(path, None)
}

/// As [`read_rgb`], refusing an image whose header declares a size over `limits` before it is
/// decoded.
pub fn read_rgb_within(path: &Path, limits: Option<&MediaLimits>) -> Result<RgbFrame, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::Read { path: path.to_path_buf(), source: e })?;
    let decode = |reason: String| MediaError::Decode { path: path.to_path_buf(), reason };
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes.as_slice()))
            .with_guessed_format()
            .map_err(|e| decode(e.to_string()))
    };
    match reader()?.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(f) => return Err(decode(format!("{f:?} is not supported"))),
        None => return Err(decode("unknown file type".into())),
    }
    if let Some(l) = limits {
        let (w, h) = reader()?.into_dimensions().map_err(|e| decode(e.to_string()))?;
        l.check_size(path, w, h)?;
    }
    let img = upright(reader()?, &decode)?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbFrame::new(w, h, img.into_raw()))
}

/// Decodes an image and turns it upright as its EXIF orientation (JPEG APP1, PNG eXIf) says.
fn upright<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    decode: &dyn Fn(String) -> MediaError,
) -> Result<DynamicImage, MediaError> {
    let mut decoder = reader.into_decoder().map_err(|e| decode(e.to_string()))?;
    let orientation = decoder.orientation().map_err(|e| decode(e.to_string()))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The form of a stored still: what a styled copy must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillForm {
    pub format: StillFormat,
    /// 16 bits per sample (PNG only): the styled copy is written with 16 bits too.
    pub sixteen_bit: bool,
    /// The alpha channel, upright, carried over to the styled copy unchanged.
    pub alpha: Option<Alpha>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StillFormat {
    Png,
    Jpeg,
}

impl StillFormat {
    pub fn name(self) -> &'static str {
        match self {
            StillFormat::Png => "png",
            StillFormat::Jpeg => "jpeg",
        }
    }
}

/// An alpha plane, one sample per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alpha {
    Eight(Vec<u8>),
    Sixteen(Vec<u16>),
}

/// A still decoded for styling: the upright RGB8 picture the network sees, and its form.
#[derive(Debug, Clone)]
pub struct Still {
    pub rgb: RgbFrame,
    pub form: StillForm,
}

/// Decodes a PNG or JPEG (by content) held in memory; `name` names it in errors. With `limits`
/// the header's size is checked before the pixels are decoded.
pub fn decode_still(bytes: &[u8], name: &Path, limits: Option<&MediaLimits>) -> Result<Still, MediaError> {
    let decode = |reason: String| MediaError::Decode { path: name.to_path_buf(), reason };
    let reader =
        || ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| decode(e.to_string()));
    let format = match reader()?.format() {
        Some(ImageFormat::Png) => StillFormat::Png,
        Some(ImageFormat::Jpeg) => StillFormat::Jpeg,
        Some(f) => return Err(decode(format!("{f:?} is not supported (PNG and JPEG are)"))),
        None => return Err(decode("unknown file type (PNG and JPEG are supported)".into())),
    };
    if let Some(l) = limits {
        let (w, h) = reader()?.into_dimensions().map_err(|e| decode(e.to_string()))?;
        l.check_size(name, w, h)?;
    }
    let img = upright(reader()?, &decode)?;
    let color = img.color();
    let sixteen_bit = format == StillFormat::Png && color.bytes_per_pixel() / color.channel_count() >= 2;
    let alpha = match (color.has_alpha(), sixteen_bit) {
        (false, _) => None,
        (true, false) => Some(Alpha::Eight(img.to_rgba8().pixels().map(|p| p.0[3]).collect())),
        (true, true) => Some(Alpha::Sixteen(img.to_rgba16().pixels().map(|p| p.0[3]).collect())),
    };
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(Still { rgb: RgbFrame::new(w, h, rgb.into_raw()), form: StillForm { format, sixteen_bit, alpha } })
}

/// Encodes a styled picture in `form`: PNG (8 or 16 bits, with the original alpha) or JPEG at
/// `jpeg_quality` (1-100). A 16-bit copy holds the 8-bit result scaled (v × 257).
pub fn encode_still(styled: &RgbFrame, form: &StillForm, jpeg_quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = (styled.width, styled.height);
    let pixels = w as usize * h as usize;
    if styled.data.len() != pixels * 3 {
        return Err(format!("a {w}x{h} picture needs {} bytes, got {}", pixels * 3, styled.data.len()));
    }
    let bad_alpha =
        |n: usize| format!("the alpha plane has {n} samples for a {w}x{h} picture (turned by its orientation?)");
    let img = match (&form.alpha, form.sixteen_bit) {
        (None, false) => {
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, styled.data.clone()).ok_or("bad RGB buffer")?)
        }
        (None, true) => {
            let data: Vec<u16> = styled.data.iter().map(|&v| v as u16 * 257).collect();
            DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, data).ok_or("bad RGB16 buffer")?)
        }
        (Some(a), sixteen) => {
            let len = match a {
                Alpha::Eight(v) => v.len(),
                Alpha::Sixteen(v) => v.len(),
            };
            if len != pixels {
                return Err(bad_alpha(len));
            }
            if sixteen {
                let mut data = Vec::with_capacity(pixels * 4);
                for (i, rgb) in styled.data.chunks_exact(3).enumerate() {
                    let alpha = match a {
                        Alpha::Sixteen(v) => v[i],
                        Alpha::Eight(v) => v[i] as u16 * 257,
                    };
                    data.extend([rgb[0] as u16 * 257, rgb[1] as u16 * 257, rgb[2] as u16 * 257, alpha]);
                }
                DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w, h, data).ok_or("bad RGBA16 buffer")?)
            } else {
                let mut data = Vec::with_capacity(pixels * 4);
                for (i, rgb) in styled.data.chunks_exact(3).enumerate() {
                    let alpha = match a {
                        Alpha::Eight(v) => v[i],
                        Alpha::Sixteen(v) => (v[i] / 257) as u8,
                    };
                    data.extend([rgb[0], rgb[1], rgb[2], alpha]);
                }
                DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, data).ok_or("bad RGBA buffer")?)
            }
        }
    };
    let mut out = Vec::new();
    match form.format {
        StillFormat::Png => {
            img.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png).map_err(|e| e.to_string())?
        }
        StillFormat::Jpeg => {
            let q = jpeg_quality.clamp(1, 100);
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q);
            DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(enc).map_err(|e| e.to_string())?
        }
    }
    Ok(out)
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

/// One still image as a source of one frame (a still is a one-frame job).
pub struct StillSource {
    info: SourceInfo,
    frame: Option<RgbFrame>,
}

impl StillSource {
    /// Reads the image at `path`, refusing one over `limits` before decoding it.
    pub fn open(path: &Path, limits: Option<&MediaLimits>) -> Result<Self, MediaError> {
        let frame = read_rgb_within(path, limits)?;
        let info = SourceInfo {
            width: frame.width,
            height: frame.height,
            time_base: Rate::new(1, 1),
            frame_rate: Rate::new(1, 1),
            frames: Some(1),
            frames_exact: true,
        };
        Ok(Self { info, frame: Some(frame) })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        Ok(self.frame.take().map(|image| Frame { index: 0, pts: 0, duration: 1, image, timing: Default::default() }))
    }
}

/// Writes the one styled frame of a still as an image (the format from the extension),
/// atomically, when finished: nothing appears under the name unless it is complete.
pub struct StillSink {
    path: std::path::PathBuf,
    frame: Option<RgbFrame>,
}

impl StillSink {
    /// Checks the output's extension now: a bad output name must not cost a GPU run.
    pub fn create(path: &Path) -> Result<Self, MediaError> {
        output_format(path)?;
        Ok(Self { path: path.to_path_buf(), frame: None })
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        if self.frame.is_some() {
            return Err(MediaError::Write { path: self.path.clone(), reason: "an image holds one frame".into() });
        }
        self.frame = Some(frame.image.clone());
        Ok(())
    }

    pub fn finish(self) -> Result<(), MediaError> {
        match &self.frame {
            Some(f) => write_rgb(&self.path, f),
            None => Err(MediaError::Write { path: self.path.clone(), reason: "no frame was styled".into() }),
        }
    }
}
