//! `ReorderFrames`: routes every frame to worker 0, stashes it by timestamp, and releases
//! stashed frames in timestamp order once the input frontier has passed them, so everything
//! downstream sees frames strictly in order, however the workers finished them.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use crate::frame::Frame;

pub trait ReorderFrames<'scope> {
    fn reorder_frames(self) -> Self;
}

impl<'scope> ReorderFrames<'scope> for Stream<'scope, u64, Vec<Frame>> {
    fn reorder_frames(self) -> Self {
        self.unary_frontier(Exchange::new(|_f: &Frame| 0), "ReorderFrames", |_cap, _info| {
            let mut stash = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, frames| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    for f in frames.drain(..) {
                        stash.insert(f.index, (cap.delayed(&f.index), f));
                    }
                });
                // Release, in order, every frame whose time the frontier has passed.
                while let Some(entry) = stash.first_entry() {
                    if frontier.frontier().less_equal(entry.key()) {
                        break;
                    }
                    let (cap, f) = entry.remove();
                    output.session(&cap).give(f);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::core::UnorderedInput;
    use timely::dataflow::operators::Inspect;

    use super::*;
    use crate::frame::RgbFrame;

    fn frame(index: u64) -> Frame {
        Frame {
            index,
            pts: index as i64 * 40,
            duration: 40,
            image: RgbFrame::new(1, 1, vec![index as u8; 3]),
            timing: Default::default(),
        }
    }

    /// Each worker sends its share of frames in a scrambled order (each frame at its own
    /// timestamp, through capabilities of an unordered input); worker 0 must see 0..n in order.
    fn released_in_order(workers: usize, n: u64) -> Vec<u64> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_w = seen.clone();
        timely::execute(timely::Config::process(workers), move |worker| {
            let (me, peers) = (worker.index() as u64, worker.peers() as u64);
            let seen = seen_w.clone();
            let (mut input, cap) = worker.dataflow::<u64, _, _>(|scope| {
                let ((input, cap), stream) =
                    scope.new_unordered_input::<timely::container::CapacityContainerBuilder<Vec<Frame>>>();
                stream.reorder_frames().inspect(move |f: &Frame| seen.lock().unwrap().push(f.index));
                (input, cap)
            });
            let mut mine: Vec<u64> = (0..n).filter(|i| i % peers == me).collect();
            // Scramble: odd positions reversed, then even ones.
            mine.sort_by_key(|i| (i % 2, std::cmp::Reverse(*i)));
            for i in mine {
                input.activate().session(&cap.delayed(&i)).give(frame(i));
                worker.step();
            }
            drop(cap);
            while worker.step_or_park(None) {}
        })
        .unwrap();
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    }

    #[test]
    fn scrambled_arrivals_are_released_in_order_at_1_2_and_3_workers() {
        for workers in [1, 2, 3] {
            let seen = released_in_order(workers, 40);
            assert_eq!(seen, (0..40).collect::<Vec<_>>(), "{workers} workers");
        }
    }
}
