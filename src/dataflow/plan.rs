//! Incremental work planning with differential dataflow: the work set is
//! `(videos × styles) − done`, maintained as the three inputs change.
//!
//! ```text
//! videos (id, content) ─┐
//!                        join on () ─> ((content, model), (id, style)) ─ antijoin done ─> work
//! styles (name, model) ─┘                                                  (content, model)
//! ```
//! A pair is identified by the *content* of the video (its hash) and the *model* (its weights'
//! hash), so a renamed copy of a finished video, or a style name pointing at the same weights,
//! is still done, while a changed video or retrained model is new work. The planner runs in a
//! single-threaded timely worker of its own, owned by the caller and stepped in `plan`; it
//! holds only names and hashes, never frames.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use differential_dataflow::input::{Input, InputSession};
use timely::communication::allocator::thread::Thread;
use timely::communication::allocator::Allocator;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;
use timely::WorkerConfig;

/// One (video, style) pair still to be done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkItem {
    /// The video's id (for files: its path).
    pub video: String,
    /// The style's name.
    pub style: String,
    /// Hash of the video's content.
    pub content: String,
    /// Hash of the style model's weights.
    pub model: String,
}

type Pair = (String, String);

/// The planner: a differential dataflow over videos, styles and finished pairs.
pub struct Planner {
    worker: Worker,
    videos: InputSession<u64, Pair, isize>,
    styles: InputSession<u64, Pair, isize>,
    done: InputSession<u64, Pair, isize>,
    probe: ProbeHandle<u64>,
    /// The work set as differential reports it: pair → multiplicity.
    work: Rc<RefCell<BTreeMap<WorkItem, isize>>>,
    // What each input holds now (the inputs take changes; these make updates idempotent).
    known_videos: BTreeMap<String, String>,
    known_styles: BTreeMap<String, String>,
    known_done: BTreeSet<Pair>,
    round: u64,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    pub fn new() -> Self {
        let mut worker =
            Worker::new(WorkerConfig::default(), Allocator::Thread(Thread::default()), Some(std::time::Instant::now()));
        let work = Rc::new(RefCell::new(BTreeMap::new()));
        let seen = work.clone();
        let (videos, styles, done, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (videos_in, videos) = scope.new_collection::<Pair, isize>();
            let (styles_in, styles) = scope.new_collection::<Pair, isize>();
            let (done_in, done) = scope.new_collection::<Pair, isize>();
            let pairs = videos.map(|v| ((), v)).join_map(styles.map(|s| ((), s)), |_, (id, content), (name, model)| {
                ((content.clone(), model.clone()), (id.clone(), name.clone()))
            });
            let (probe, _) = pairs
                .antijoin(done)
                .consolidate()
                .inspect(move |(((content, model), (video, style)), _time, diff)| {
                    let item = WorkItem {
                        video: video.clone(),
                        style: style.clone(),
                        content: content.clone(),
                        model: model.clone(),
                    };
                    *seen.borrow_mut().entry(item).or_insert(0) += *diff;
                })
                .probe();
            (videos_in, styles_in, done_in, probe)
        });
        Self {
            worker,
            videos,
            styles,
            done,
            probe,
            work,
            known_videos: BTreeMap::new(),
            known_styles: BTreeMap::new(),
            known_done: BTreeSet::new(),
            round: 0,
        }
    }

    /// Adds a video, or replaces it when its content changed.
    pub fn video(&mut self, id: &str, content: &str) {
        upsert(&mut self.known_videos, &mut self.videos, id, content);
    }

    /// Removes a video (its pairs leave the work set).
    pub fn remove_video(&mut self, id: &str) {
        if let Some(content) = self.known_videos.remove(id) {
            self.videos.remove((id.to_string(), content));
        }
    }

    /// Adds a style, or replaces it when its model changed.
    pub fn style(&mut self, name: &str, model: &str) {
        upsert(&mut self.known_styles, &mut self.styles, name, model);
    }

    /// Records a finished pair: video content `content` styled with model `model`.
    pub fn done(&mut self, content: &str, model: &str) {
        let pair = (content.to_string(), model.to_string());
        if self.known_done.insert(pair.clone()) {
            self.done.insert(pair);
        }
    }

    /// Applies the changes made since the last call and returns the work set, in order.
    pub fn plan(&mut self) -> Vec<WorkItem> {
        self.round += 1;
        for input in [&mut self.videos, &mut self.styles, &mut self.done] {
            input.advance_to(self.round);
            input.flush();
        }
        while self.probe.less_than(&self.round) {
            self.worker.step();
        }
        let mut work = self.work.borrow_mut();
        work.retain(|_, n| *n != 0);
        work.iter().filter(|(_, n)| **n > 0).map(|(item, _)| item.clone()).collect()
    }

    /// How many (video, style) pairs exist in all, done or not.
    pub fn pairs(&self) -> usize {
        self.known_videos.len() * self.known_styles.len()
    }
}

fn upsert(known: &mut BTreeMap<String, String>, input: &mut InputSession<u64, Pair, isize>, key: &str, value: &str) {
    match known.insert(key.to_string(), value.to_string()) {
        Some(old) if old == value => {}
        Some(old) => {
            input.remove((key.to_string(), old));
            input.insert((key.to_string(), value.to_string()));
        }
        None => input.insert((key.to_string(), value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(work: &[WorkItem]) -> Vec<(String, String)> {
        work.iter().map(|w| (w.video.clone(), w.style.clone())).collect()
    }

    fn pair(v: &str, s: &str) -> (String, String) {
        (v.to_string(), s.to_string())
    }

    #[test]
    fn work_is_videos_times_styles_minus_done_and_follows_every_change() {
        let mut p = Planner::new();
        p.video("a.mp4", "ha");
        p.video("b.mp4", "hb");
        p.style("udnie", "mu");
        assert_eq!(names(&p.plan()), vec![pair("a.mp4", "udnie"), pair("b.mp4", "udnie")]);

        // Finishing a pair removes it; finishing it again changes nothing.
        p.done("ha", "mu");
        assert_eq!(names(&p.plan()), vec![pair("b.mp4", "udnie")]);
        p.done("ha", "mu");
        assert_eq!(names(&p.plan()), vec![pair("b.mp4", "udnie")]);

        // A new style adds only its own pairs.
        p.done("hb", "mu");
        assert!(p.plan().is_empty());
        p.style("wave", "mw");
        assert_eq!(names(&p.plan()), vec![pair("a.mp4", "wave"), pair("b.mp4", "wave")]);

        // A renamed copy of finished content is done already; changed content is new work.
        p.video("copy-of-a.mp4", "ha");
        p.done("ha", "mw");
        assert_eq!(names(&p.plan()), vec![pair("b.mp4", "wave")]);
        p.video("a.mp4", "ha2");
        assert_eq!(names(&p.plan()), vec![pair("a.mp4", "udnie"), pair("a.mp4", "wave"), pair("b.mp4", "wave")]);

        // Removing a video removes its work; the counts stay exact.
        p.remove_video("a.mp4");
        assert_eq!(names(&p.plan()), vec![pair("b.mp4", "wave")]);
        assert_eq!(p.pairs(), 4);
    }

    #[test]
    fn a_retrained_model_under_the_same_name_is_new_work() {
        let mut p = Planner::new();
        p.video("a.mp4", "ha");
        p.style("udnie", "m1");
        p.done("ha", "m1");
        assert!(p.plan().is_empty());
        p.style("udnie", "m2");
        assert_eq!(names(&p.plan()), vec![pair("a.mp4", "udnie")]);
        p.style("udnie", "m1");
        assert!(p.plan().is_empty());
    }
}
