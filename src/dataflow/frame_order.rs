//! The frame-order check behind the ordering stage (`ReorderFrames`): the encoder thread feeds
//! it every frame it writes, and it refuses a frame out of order, twice, or a video that ends
//! with one missing. (It can also stash items until every earlier index has come, releasing
//! them in order.)

use std::collections::BTreeMap;

use crate::frame::FrameIdx;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error("frame {index} arrived twice")]
    Duplicate { index: FrameIdx },
    #[error("frame {index} arrived after it was due (already released up to {next})")]
    Late { index: FrameIdx, next: FrameIdx },
    #[error("frame {missing} never arrived ({held} later frames held back, {released} released)")]
    Missing { missing: FrameIdx, held: usize, released: FrameIdx },
}

/// Holds items until every earlier index has been released. Memory is bounded by how far
/// ahead of the oldest missing frame items can arrive (the pipeline's frames in flight).
#[derive(Debug)]
pub struct FrameOrder<T> {
    next: FrameIdx,
    stash: BTreeMap<FrameIdx, T>,
}

impl<T> Default for FrameOrder<T> {
    fn default() -> Self {
        Self { next: 0, stash: BTreeMap::new() }
    }
}

impl<T> FrameOrder<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item; returns every item that is now due, in order.
    pub fn push(&mut self, index: FrameIdx, item: T) -> Result<Vec<T>, OrderError> {
        if index < self.next {
            return Err(OrderError::Late { index, next: self.next });
        }
        if self.stash.insert(index, item).is_some() {
            return Err(OrderError::Duplicate { index });
        }
        let mut out = Vec::new();
        while let Some(item) = self.stash.remove(&self.next) {
            out.push(item);
            self.next += 1;
        }
        Ok(out)
    }

    /// Frames released so far (the next index due).
    pub fn released(&self) -> FrameIdx {
        self.next
    }

    /// Items waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.stash.len()
    }

    /// Ends the stream: an error if anything is still held (a frame is missing), or if fewer
    /// than `expected` frames were released.
    pub fn finish(self, expected: Option<FrameIdx>) -> Result<FrameIdx, OrderError> {
        let held = self.stash.len();
        if held > 0 || expected.is_some_and(|e| self.next < e) {
            return Err(OrderError::Missing { missing: self.next, held, released: self.next });
        }
        Ok(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic shuffle (xorshift Fisher-Yates).
    fn shuffled(n: u64, seed: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        let mut s = seed | 1;
        for i in (1..v.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v.swap(i, (s % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn shuffled_arrivals_come_out_in_order() {
        for seed in 1..20 {
            let order = shuffled(200, seed);
            assert_ne!(order, (0..200).collect::<Vec<_>>());
            let mut r = FrameOrder::new();
            let mut out = Vec::new();
            for i in order {
                out.extend(r.push(i, i * 10).unwrap());
            }
            assert_eq!(out, (0..200).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(r.finish(Some(200)).unwrap(), 200);
        }
    }

    #[test]
    fn a_missing_frame_fails_the_finish() {
        let mut r = FrameOrder::new();
        for i in [0, 1, 3, 4] {
            r.push(i, ()).unwrap();
        }
        assert_eq!(r.finish(None), Err(OrderError::Missing { missing: 2, held: 2, released: 2 }));
        let mut r = FrameOrder::new();
        r.push(0, ()).unwrap();
        assert!(r.finish(Some(2)).is_err(), "the last frame missing is caught too");
    }

    #[test]
    fn duplicates_and_late_frames_are_refused() {
        let mut r = FrameOrder::new();
        r.push(1, ()).unwrap();
        assert_eq!(r.push(1, ()), Err(OrderError::Duplicate { index: 1 }));
        r.push(0, ()).unwrap();
        assert_eq!(r.push(0, ()), Err(OrderError::Late { index: 0, next: 2 }));
    }
}
