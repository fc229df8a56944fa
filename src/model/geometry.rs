//! The frame-size rule: which size the network runs at for a given frame, and back.
//!
//! A network with two stride-2 layers maps W x H to W x H exactly only when W and H are
//! multiples of 4 (its `size_multiple`). Any other frame is extended to the next multiple (and
//! to at least the network's `min_size`) by repeating its last column and last row; the output
//! is cropped back to the frame's own W x H, keeping the top-left corner. Frames that already
//! have a valid size are processed exactly as they are (this is what the golden data tests).

use super::description::NetworkDescription;

/// The size the network runs at for a frame of `width x height`.
pub fn working_size(desc: &NetworkDescription, width: u32, height: u32) -> (u32, u32) {
    let m = desc.size_multiple();
    let min = desc.min_size();
    let fit = |n: u32| n.max(1).div_ceil(m).max(min.div_ceil(m)) * m;
    (fit(width), fit(height))
}

/// Extends an RGB8 frame to `to_w x to_h` by repeating the last column and row.
pub fn extend_rgb8(data: &[u8], width: u32, height: u32, to_w: u32, to_h: u32) -> Vec<u8> {
    let (w, to_w) = (width as usize, to_w as usize);
    let mut out = Vec::with_capacity(to_w * to_h as usize * 3);
    for y in 0..to_h as usize {
        let row = &data[y.min(height as usize - 1) * w * 3..][..w * 3];
        out.extend_from_slice(row);
        let last = &row[(w - 1) * 3..];
        for _ in w..to_w {
            out.extend_from_slice(last);
        }
    }
    out
}

/// Crops an HWC buffer with `c` channels from `from_w` wide to the top-left `w x h`.
pub fn crop<T: Copy>(data: &[T], from_w: u32, c: u32, w: u32, h: u32) -> Vec<T> {
    let (from_w, c, w) = (from_w as usize, c as usize, w as usize);
    (0..h as usize).flat_map(|y| data[y * from_w * c..][..w * c].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_the_network_multiple() {
        let d = NetworkDescription::load("transformnet-tf").unwrap();
        assert_eq!(working_size(&d, 256, 144), (256, 144));
        assert_eq!(working_size(&d, 37, 23), (40, 24));
        assert_eq!(working_size(&d, 1, 1), (4, 4));
        let t = NetworkDescription::load("transformnet-torch").unwrap();
        assert_eq!(working_size(&t, 1, 1), (8, 8));
        assert_eq!(working_size(&t, 64, 48), (64, 48));
    }

    #[test]
    fn extend_repeats_edges_and_crop_inverts_it() {
        let data: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8).collect(); // 3 wide, 2 high
        let ext = extend_rgb8(&data, 3, 2, 4, 4);
        assert_eq!(&ext[9..12], &data[6..9]); // row 0, column 3 repeats column 2
        assert_eq!(&ext[36..48], &ext[24..36]); // row 3 repeats row 1 (which is row 2 here)
        assert_eq!(crop(&ext, 4, 3, 3, 2), data);
    }
}
