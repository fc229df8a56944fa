//! Record types that flow between stages. Depends on nothing else in the crate.

/// An 8-bit RGB frame, row-major, 3 bytes per pixel, no row padding.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}
