//! The engine: one timely execution that lives as long as its owner (a `stylize` run, a `batch`
//! run, the service), into which jobs are admitted at any time. Its workers — each with its own
//! GPU device and its own cache of plans — stay up between jobs, so devices are opened once and
//! pipelines and plans are built once per (model, frame size).
//!
//! ```text
//! submit(job) --admission, same order to every worker--> each worker builds the job's dataflow:
//!   worker 0: decode thread --input--> Stylize (every worker, own GPU) --> ReorderFrames
//!             --> EncodeSink --> encoder thread --> result --> JobHandle::wait
//! ```
//! Each job is a dataflow of its own (its own input, frontier, reorder stage and sink), so a
//! short job is never held behind a long one: worker 0 feeds every running job, the one with the
//! fewest frames left first, each at most `max_frames_in_flight` frames ahead of its own sink.
//! Timely needs every worker to build dataflows in the same order: `submit` sends each
//! admission to every worker's own channel under one lock, so all see the same sequence. A job
//! ends when its sink's frontier is empty; timely then drops its dataflow.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use super::frame_order::FrameOrder;
use super::stylize::{Stylize, StylizeSpec, WorkerGpu};
use super::{DataflowOptions, ErrorSlot, Job, PipelineError, ReorderFrames};
use crate::frame::Frame;
use crate::media::{Sink, Source};
use crate::model::{NetworkDescription, Weights};
use crate::stop::StopToken;
use crate::telemetry::progress::Progress;

type FrameInput = InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Frame>>>;
type JobResult = Result<u64, PipelineError>;

/// What a job's encoder thread receives from its sink.
enum ToEncoder {
    Frame(Frame),
    /// Every frame has passed the sink: this many were fed in.
    End(u64),
}

/// A job as one worker receives it.
struct Admission {
    id: u64,
    network: Option<(Arc<NetworkDescription>, Arc<Weights>)>,
    clock: crate::telemetry::stages::Clock,
    /// The job's own precision and kernel choice, if it has one.
    choice: Option<(crate::model::gpu::Precision, crate::model::gpu::KernelChoice)>,
    stop: StopToken,
    errors: ErrorSlot,
    /// Only to the worker that decodes and encodes (worker 0 of process 0).
    ends: Option<(Source, Sink, Progress)>,
    /// Only to the process's first worker: where the job's result goes.
    done: Option<Sender<JobResult>>,
}

/// A job submitted to the engine.
pub struct JobHandle {
    id: u64,
    done: Receiver<JobResult>,
    stop: StopToken,
}

impl JobHandle {
    /// The engine's number for the job (in submission order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The job's own stop token (cancel, timeout).
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    /// Waits for the job to end: the frames written (0 on processes other than 0).
    pub fn wait(self) -> JobResult {
        self.done
            .recv()
            .unwrap_or_else(|_| Err(PipelineError::Dataflow("the engine stopped before the job ended".into())))
    }

    /// Waits at most `timeout`: `None` while the job runs.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<JobResult> {
        match self.done.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                Some(Err(PipelineError::Dataflow("the engine stopped before the job ended".into())))
            }
        }
    }
}

/// The long-lived dataflow execution. `submit` may be called from any thread.
pub struct Engine {
    /// One admission channel per local worker; emptied by shutdown.
    admit: Mutex<Vec<Sender<Admission>>>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
    next: AtomicU64,
    workers: usize,
    live: Arc<AtomicUsize>,
}

/// Counts a worker as live while it runs (a panicking worker counts itself out too).
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Starts the workers (and, in a cluster, connects to the other processes). `shutdown`
    /// stops every job (Ctrl-C); each job also has its own token.
    pub fn start(opts: DataflowOptions, shutdown: StopToken) -> Result<Self, PipelineError> {
        let threads = opts.workers.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel::<Admission>()).unzip();
        let receivers = Arc::new(Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>()));
        let live = Arc::new(AtomicUsize::new(threads));
        let live_w = live.clone();
        let config = opts.timely_config();
        let guards = timely::execute(config, move |worker| {
            let _live = LiveGuard(live_w.clone());
            // Worker index = process * threads + local index.
            let local = worker.index() % threads;
            let admissions = receivers.lock().ok().and_then(|mut r| r.get_mut(local).and_then(Option::take));
            if let Some(admissions) = admissions {
                run_worker(worker, admissions, &opts, &shutdown);
            }
        })
        .map_err(PipelineError::Dataflow)?;
        Ok(Self {
            admit: Mutex::new(senders),
            guards: Mutex::new(Some(guards)),
            next: AtomicU64::new(0),
            workers: threads,
            live,
        })
    }

    /// Admits a job; it starts at once, beside any jobs already running.
    pub fn submit(&self, job: Job) -> JobHandle {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (done_tx, done) = channel();
        let handle = JobHandle { id, done, stop: job.stop.clone() };
        let errors = ErrorSlot::default();
        let mut ends = job.ends;
        // One lock for all the sends: every worker sees the admissions in the same order.
        let Ok(senders) = self.admit.lock() else { return handle };
        for (local, sender) in senders.iter().enumerate() {
            let admission = Admission {
                id,
                network: job.network.clone(),
                clock: job.clock.clone(),
                choice: job.gpu,
                stop: job.stop.clone(),
                errors: errors.clone(),
                ends: if local == 0 { ends.take() } else { None },
                done: (local == 0).then(|| done_tx.clone()),
            };
            if sender.send(admission).is_err() {
                // A worker is gone (it panicked): the handle reports the engine stopped.
                tracing::error!(job = id, "the dataflow engine has stopped; the job cannot run");
                break;
            }
        }
        handle
    }

    /// Whether every worker still runs.
    pub fn is_alive(&self) -> bool {
        self.live.load(Ordering::SeqCst) == self.workers
    }

    /// Lets the running jobs finish, then stops the workers.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop_workers(&self) {
        if let Ok(mut senders) = self.admit.lock() {
            senders.clear();
        }
        let guards = self.guards.lock().ok().and_then(|mut g| g.take());
        if let Some(guards) = guards {
            for r in guards.join() {
                if let Err(e) = r {
                    tracing::error!(error = %e, "a dataflow worker failed");
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// A job on one worker while it has something to do there.
struct Running {
    id: u64,
    probe: ProbeHandle<u64>,
    /// The worker with the job's ends: its input, until closed.
    feed: Option<Feed>,
    /// The worker with the job's ends: the encoder channel, until the sink sent `End`.
    to_encoder: Rc<RefCell<Option<SyncSender<ToEncoder>>>>,
    /// A first worker without the ends (process > 0): the result, sent once the job is done.
    done: Option<Sender<JobResult>>,
}

/// Worker 0's feeding state of a job.
struct Feed {
    decoded: Receiver<Frame>,
    input: FrameInput,
    sent: Rc<Cell<u64>>,
    /// Frames the source says it holds, when it knows.
    total: Option<u64>,
    stop: StopToken,
    errors: ErrorSlot,
}

impl Running {
    fn finished(&self) -> bool {
        self.feed.is_none() && self.to_encoder.borrow().is_none() && self.done.is_none()
    }
}

fn run_worker(worker: &mut Worker, admissions: Receiver<Admission>, opts: &DataflowOptions, shutdown: &StopToken) {
    let gpu = WorkerGpu::new(&opts.gpu, opts.gpus.as_deref(), worker.index());
    // A batch is styled once whole, so at least one batch must fit in flight.
    let cap = opts.max_frames_in_flight.max(opts.frames_per_batch as usize).max(1) as u64;
    let mut running: Vec<Running> = Vec::new();
    let mut open = true;
    loop {
        while open {
            match admissions.try_recv() {
                Ok(a) => {
                    if let Some(r) = admit(worker, a, &gpu, opts, cap as usize) {
                        running.push(r);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        let fed = feed(&mut running, cap, shutdown);
        for r in running.iter_mut() {
            if r.done.is_some() && r.probe.done() {
                if let Some(d) = r.done.take() {
                    let _ = d.send(Ok(0));
                }
            }
        }
        running.retain(|r| {
            let over = r.finished();
            if over {
                tracing::debug!(job = r.id, "job left the worker");
            }
            !over
        });
        if !open && running.is_empty() && !worker.has_dataflows() {
            break;
        }
        if fed {
            worker.step();
        } else {
            // Park briefly: admissions arrive on a channel timely does not watch.
            worker.step_or_park(Some(Duration::from_millis(if running.is_empty() { 5 } else { 1 })));
        }
    }
}

/// Builds the job's dataflow on this worker; starts its decoder and encoder threads on the
/// worker with its ends. `None` when this worker has nothing more to do for the job (timely
/// runs its share of the operators until the job's dataflow is complete).
fn admit(
    worker: &mut Worker,
    a: Admission,
    gpu: &Rc<RefCell<WorkerGpu>>,
    opts: &DataflowOptions,
    cap: usize,
) -> Option<Running> {
    let mut input = FrameInput::new();
    let probe = ProbeHandle::new();
    let to_encoder: Rc<RefCell<Option<SyncSender<ToEncoder>>>> = Rc::new(RefCell::new(None));
    let sent = Rc::new(Cell::new(0u64));
    let spec = StylizeSpec {
        network: a.network.clone(),
        clock: a.clock.clone(),
        gpu: opts.gpu.clone(),
        frames_per_batch: opts.frames_per_batch,
        retries: opts.retries,
        fail_frame: opts.fail_frame,
        choice: a.choice,
    };
    let (sink_queue, sink_sent) = (to_encoder.clone(), sent.clone());
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .container::<Vec<Frame>>()
            .stylize(spec, gpu.clone(), a.errors.clone())
            .reorder_frames()
            .probe_with(&probe)
            .sink(timely::dataflow::channels::pact::Pipeline, "EncodeSink", move |(input, frontier)| {
                input.for_each(|_cap, frames| {
                    let queue = sink_queue.borrow();
                    for f in frames.drain(..) {
                        if let Some(q) = queue.as_ref() {
                            // The encoder drains its channel to the end, even after an error.
                            let _ = q.send(ToEncoder::Frame(f));
                        }
                    }
                });
                // Every frame has arrived: say how many were fed, and let the encoder finish.
                if frontier.frontier().is_empty() {
                    if let Some(q) = sink_queue.borrow_mut().take() {
                        let _ = q.send(ToEncoder::End(sink_sent.get()));
                    }
                }
            });
    });
    let Some((mut source, mut sink, progress)) = a.ends else {
        drop(input); // this worker feeds nothing
        return a.done.map(|d| Running { id: a.id, probe, feed: None, to_encoder, done: Some(d) });
    };
    source.set_clock(a.clock.clone());
    sink.set_clock(a.clock.clone());
    let (to_feed, decoded) = sync_channel::<Frame>(cap);
    let (to_sink, from_sink) = sync_channel::<ToEncoder>(cap);
    *to_encoder.borrow_mut() = Some(to_sink);
    let total = source.info().frames;
    // Decode ahead on a thread of its own, at most `cap` frames.
    let decoder =
        std::thread::Builder::new().name(format!("decode-{}", a.id)).spawn(move || -> Result<(), PipelineError> {
            while let Some(f) = source.next_frame()? {
                if to_feed.send(f).is_err() {
                    break; // the job stopped
                }
            }
            Ok(())
        });
    let decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            a.errors.set(PipelineError::Dataflow(format!("starting the decoder thread: {e}")));
            // No frames: the input closes at once and the encoder reports the error.
            std::thread::spawn(|| Ok(()))
        }
    };
    let encoder = Encoder { from_sink, sink, progress, errors: a.errors.clone(), decoder, done: a.done };
    if let Err(e) = std::thread::Builder::new().name(format!("encode-{}", a.id)).spawn(move || encoder.run()) {
        a.errors.set(PipelineError::Dataflow(format!("starting the encoder thread: {e}")));
    }
    Some(Running {
        id: a.id,
        probe,
        feed: Some(Feed { decoded, input, sent, total, stop: a.stop, errors: a.errors }),
        to_encoder,
        done: None,
    })
}

/// Feeds every running job with room in flight, the one with the fewest frames left first;
/// closes the input of a job that stopped, failed or ran out of frames. Whether any frame moved.
fn feed(running: &mut [Running], cap: u64, shutdown: &StopToken) -> bool {
    let mut order: Vec<usize> = (0..running.len()).filter(|i| running[*i].feed.is_some()).collect();
    order.sort_by_key(|i| {
        running[*i].feed.as_ref().map_or(u64::MAX, |f| f.total.map_or(u64::MAX, |t| t.saturating_sub(f.sent.get())))
    });
    let mut fed = false;
    for i in order {
        let r = &mut running[i];
        let Some(f) = r.feed.as_mut() else { continue };
        if let Some(why) = f.stop.reason().or(shutdown.reason()) {
            f.errors.set(PipelineError::Stopped(why));
            r.feed = None; // closes the input: the frames in flight drain, nothing is published
            continue;
        }
        if f.errors.is_set() {
            r.feed = None;
            continue;
        }
        let sent = f.sent.get();
        // Back-pressure: at most `cap` frames between this job's input and its sink.
        if sent >= cap && r.probe.less_than(&(sent - cap)) {
            continue;
        }
        match f.decoded.try_recv() {
            Ok(frame) => {
                f.input.send(frame);
                f.sent.set(sent + 1);
                f.input.advance_to(sent + 1);
                fed = true;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => r.feed = None,
        }
    }
    fed
}

/// A job's encoder thread: writes the styled frames in order, and at the end publishes the
/// output only if the job is whole and nothing failed.
struct Encoder {
    from_sink: Receiver<ToEncoder>,
    sink: Sink,
    progress: Progress,
    errors: ErrorSlot,
    decoder: JoinHandle<Result<(), PipelineError>>,
    done: Option<Sender<JobResult>>,
}

impl Encoder {
    fn run(mut self) {
        let mut order = FrameOrder::<()>::new();
        let mut fed = None;
        for message in self.from_sink.iter() {
            match message {
                ToEncoder::End(n) => {
                    fed = Some(n);
                    break;
                }
                // After an error, keep draining so the sink never blocks; write nothing more.
                ToEncoder::Frame(_) if self.errors.is_set() => {}
                ToEncoder::Frame(f) => {
                    let written = order
                        .push(f.index, ())
                        .map_err(PipelineError::from)
                        .and_then(|_| self.sink.write(&f).map_err(PipelineError::from));
                    match written {
                        Ok(()) => self.progress.frame(&f),
                        Err(e) => self.errors.set(e),
                    }
                }
            }
        }
        match self.decoder.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.errors.set(e),
            Err(_) => self.errors.set(PipelineError::Dataflow("the decoder thread panicked".into())),
        }
        let sink = self.sink;
        let result = match (self.errors.take(), fed) {
            // (The closure owns the sink: it is dropped with it when the order check fails.)
            (None, Some(n)) => order.finish(Some(n)).map_err(PipelineError::from).and_then(|n| {
                self.progress.finish();
                sink.finish().map(|()| n).map_err(PipelineError::from)
            }),
            (error, _) => {
                // Dropped unfinished, the sink removes its temporary output; before the result
                // goes out, since whoever receives it may exit the process at once (a temporary
                // file was left behind when this thread lost that race).
                drop(sink);
                Err(error
                    .unwrap_or_else(|| PipelineError::Dataflow("the dataflow stopped before the job ended".into())))
            }
        };
        if let Some(done) = self.done {
            let _ = done.send(result);
        }
    }
}
