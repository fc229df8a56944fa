//! Precisions: the one a plan stores its activations and weights in, which picks the precision
//! prelude its kernels are joined with.

/// The precision activations (and the storage-buffer weights) are stored in: which precision
/// prelude every kernel is joined with. Arithmetic is f32 at both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoragePrecision {
    F32,
    /// Needs the device feature SHADER_F16.
    F16,
}

impl StoragePrecision {
    pub const ALL: [StoragePrecision; 2] = [StoragePrecision::F32, StoragePrecision::F16];

    pub fn name(self) -> &'static str {
        match self {
            StoragePrecision::F32 => "f32",
            StoragePrecision::F16 => "f16",
        }
    }

    /// Bytes of one stored value.
    pub fn bytes(self) -> u64 {
        match self {
            StoragePrecision::F32 => 4,
            StoragePrecision::F16 => 2,
        }
    }

    /// The precision prelude: the stored type `st` / `st4` and its conversions to and from f32.
    pub fn prelude(self) -> &'static str {
        match self {
            StoragePrecision::F32 => include_str!("../../../shaders/precision_f32.wgsl"),
            StoragePrecision::F16 => include_str!("../../../shaders/precision_f16.wgsl"),
        }
    }

    /// Its file in `shaders/`.
    pub fn prelude_file(self) -> String {
        format!("precision_{}.wgsl", self.name())
    }
}
