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
