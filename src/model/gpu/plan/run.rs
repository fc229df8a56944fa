//! Running a plan: upload a frame, encode every step, submit once, read back (one frame, a
//! batch, a prefix of the network up to a layer), and the per-kernel timestamps.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{scoped, staging, tensor_bytes, BatchIo, FrameOutput, KernelTime, NetworkPlan, Step, Timing};
use crate::model::gpu::precision::StoragePrecision;
use crate::model::gpu::GpuError;

impl NetworkPlan {
    /// Styles one RGB8 frame (`width x height x 3` bytes).
    pub fn run(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, false, false)
    }

    /// Styles one frame and also returns the float output before clamping.
    pub fn run_with_values(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, true, false)
    }

    /// Styles one frame recording per-kernel timestamps (when the device has them; read them
    /// with `kernel_times`). Timestamp writes cost time on some adapters: `run` never does them.
    pub fn run_profiled(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, false, true)
    }

    fn run_inner(&self, rgb: &[u8], values: bool, profile: bool) -> Result<FrameOutput, GpuError> {
        let timing = self.timing.as_ref().filter(|_| profile);
        self.check_input(rgb)?;
        let mut out = FrameOutput { rgb: Vec::new(), values: Vec::new() };
        self.scoped("running a frame", || {
            self.upload(rgb);
            let mut enc = self.device.create_command_encoder(&Default::default());
            self.encode(&mut enc, self.steps.len(), timing);
            let pixels = self.width as u64 * self.height as u64;
            enc.copy_buffer_to_buffer(&self.out_rgb, 0, &self.staging_rgb, 0, pixels * 4);
            if values {
                enc.copy_buffer_to_buffer(&self.out_f32, 0, &self.staging_f32, 0, pixels * 12);
            }
            if let Some(t) = timing {
                let n = t.queries.count();
                enc.resolve_query_set(&t.queries, 0..n, &t.resolve, 0);
                enc.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, n as u64 * 8);
            }
            self.queue.submit([enc.finish()]);
        })?;
        let pixels = self.width as usize * self.height as usize;
        let bytes = self.read(&self.staging_rgb, pixels * 4)?;
        out.rgb = rgba_to_rgb(&bytes);
        if values {
            out.values = bytemuck::cast_slice::<u8, f32>(&self.read(&self.staging_f32, pixels * 12)?).to_vec();
        }
        Ok(out)
    }

    /// Styles several frames with one GPU submission and waits for them: `submit` then
    /// `InFlight::collect`. Returns RGB8 per frame, in order; a failure fails the whole batch.
    pub fn run_batch(&self, frames: &[&[u8]]) -> Result<Vec<Vec<u8>>, GpuError> {
        if frames.len() == 1 {
            return frames.iter().map(|f| self.run(f).map(|o| o.rgb)).collect();
        }
        self.submit(frames)?.collect()
    }

    /// Starts styling a batch and returns at once: each frame is uploaded to a buffer of its
    /// own, the whole network is recorded once per frame in one command buffer, submitted, and
    /// its results are asked to be mapped. `InFlight::collect` waits for them and repacks them.
    ///
    /// Batches run on the GPU in the order they were submitted (they share the activations,
    /// and the queue orders them), so a caller that submits batch n + 1 before it collects
    /// batch n overlaps the upload of n + 1 and the readback of n - 1 with the styling of n.
    /// The buffers of a batch come from a pool that grows to the number of frames in flight.
    pub fn submit(&self, frames: &[&[u8]]) -> Result<InFlight, GpuError> {
        for f in frames {
            self.check_input(f)?;
        }
        let pixels = self.width as u64 * self.height as u64;
        let mut io = {
            let mut pool = self.batch_io.lock().map_err(|_| GpuError::Device {
                context: "submitting a batch".into(),
                reason: "an earlier batch panicked".into(),
            })?;
            let keep = pool.len().saturating_sub(frames.len());
            pool.split_off(keep)
        };
        while io.len() < frames.len() {
            io.push(BatchIo {
                input: self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("batch input rgb8"),
                    size: self.input.size(),
                    usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                staging: staging(&self.device, "batch staging rgb8", pixels * 4),
            });
        }
        let started = Instant::now();
        let mut recorded = started;
        let submission = self.scoped("submitting a batch of frames", || {
            let mut enc = self.device.create_command_encoder(&Default::default());
            for (f, io) in frames.iter().zip(io.iter()) {
                self.queue.write_buffer(&io.input, 0, &padded(f));
                enc.copy_buffer_to_buffer(&io.input, 0, &self.input, 0, self.input.size());
                self.encode(&mut enc, self.steps.len(), None);
                enc.copy_buffer_to_buffer(&self.out_rgb, 0, &io.staging, 0, pixels * 4);
            }
            let commands = enc.finish();
            recorded = Instant::now();
            self.queue.submit([commands])
        })?;
        let submitted = Instant::now();
        let mapped = io
            .iter()
            .map(|b| {
                let (tx, rx) = mpsc::channel();
                b.staging.map_async(wgpu::MapMode::Read, .., move |r| {
                    let _ = tx.send(r);
                });
                rx
            })
            .collect();
        Ok(InFlight {
            device: self.device.clone(),
            submission,
            io,
            pool: self.batch_io.clone(),
            mapped,
            ready: 0,
            bytes: pixels as usize * 4,
            upload: recorded - started,
            submit: submitted - recorded,
        })
    }

    /// Per-kernel GPU times of the last `run_profiled` frame, when timestamps are on.
    pub fn kernel_times(&self) -> Result<Option<Vec<KernelTime>>, GpuError> {
        let Some(t) = &self.timing else { return Ok(None) };
        let bytes = self.read(&t.staging, self.steps.len() * 16)?;
        let stamps: &[u64] = bytemuck::cast_slice(&bytes);
        let mut by_kernel: BTreeMap<&str, f64> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            let d = stamps[2 * i + 1].saturating_sub(stamps[2 * i]) as f64 * t.period_ns / 1e6;
            tracing::debug!(step = %step.label, ms = d, "step time");
            *by_kernel.entry(step.kernel.name()).or_default() += d;
        }
        Ok(Some(by_kernel.into_iter().map(|(k, ms)| KernelTime { kernel: k.to_string(), ms }).collect()))
    }

    /// Runs the frame up to and including layer `name` and returns that layer's output as HWC
    /// f32 at the working size (for layer-by-layer checks against a reference).
    pub fn run_to_layer(&self, rgb: &[u8], layer: usize) -> Result<Vec<f32>, GpuError> {
        self.check_input(rgb)?;
        let Some(&done) = self.layer_done.get(layer) else {
            return Err(GpuError::UnknownLayer(format!("#{layer}")));
        };
        let t = self.tensors[layer + 1];
        let bytes = tensor_bytes(t.shape.len() as u64, self.precision);
        let stage = staging(&self.device, "layer staging", bytes.max(4));
        self.scoped("running to a layer", || {
            self.upload(rgb);
            let mut enc = self.device.create_command_encoder(&Default::default());
            self.encode(&mut enc, done, None);
            if let Some(step) = self.materialize.get(layer).and_then(Option::as_ref) {
                encode_step(&mut enc, step, None);
            }
            enc.copy_buffer_to_buffer(&self.slots[t.slot], 0, &stage, 0, bytes);
            self.queue.submit([enc.finish()]);
        })?;
        let raw = self.read(&stage, bytes as usize)?;
        let n = t.shape.len();
        match self.precision {
            StoragePrecision::F16 => {
                Ok(raw.chunks_exact(2).take(n).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
            }
            StoragePrecision::F32 => Ok(bytemuck::cast_slice::<u8, f32>(&raw).to_vec()),
        }
    }

    fn check_input(&self, rgb: &[u8]) -> Result<(), GpuError> {
        let want = self.width as usize * self.height as usize * 3;
        if rgb.len() != want {
            return Err(GpuError::FrameSize {
                width: self.width,
                height: self.height,
                reason: format!("got {} bytes of RGB, expected {want}", rgb.len()),
            });
        }
        Ok(())
    }

    fn upload(&self, rgb: &[u8]) {
        self.queue.write_buffer(&self.input, 0, &padded(rgb));
    }

    fn encode(&self, enc: &mut wgpu::CommandEncoder, steps: usize, timing: Option<&Timing>) {
        for (i, step) in self.steps.iter().take(steps).enumerate() {
            encode_step(enc, step, timing.map(|t| (t, i as u32)));
        }
    }

    fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        scoped(&self.device, context, f)
    }

    /// Maps a staging buffer, waits for the GPU, copies the first `len` bytes out.
    fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = mpsc::channel();
        buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| read_error(e.to_string()))?;
        rx.recv().map_err(|e| read_error(e.to_string()))?.map_err(|e| read_error(e.to_string()))?;
        let bytes = buffer.get_mapped_range(..).map_err(|e| read_error(e.to_string()))?[..len].to_vec();
        buffer.unmap();
        Ok(bytes)
    }
}

/// Records one step as one compute pass (with timestamps `2i`, `2i + 1` when timing).
fn encode_step(enc: &mut wgpu::CommandEncoder, step: &Step, timing: Option<(&Timing, u32)>) {
    let timestamp_writes = timing.map(|(t, i)| wgpu::ComputePassTimestampWrites {
        query_set: &t.queries,
        beginning_of_pass_write_index: Some(2 * i),
        end_of_pass_write_index: Some(2 * i + 1),
    });
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&step.label), timestamp_writes });
    pass.set_pipeline(&step.pipeline);
    for (bg, [x, y, z]) in &step.dispatches {
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(*x, *y, *z);
    }
}

/// RGB8 bytes padded with zeros to a multiple of 4 (buffer writes are 4-byte aligned).
fn padded(rgb: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let pad = (4 - rgb.len() % 4) % 4;
    if pad == 0 {
        std::borrow::Cow::Borrowed(rgb)
    } else {
        let mut v = rgb.to_vec();
        v.resize(rgb.len() + pad, 0);
        std::borrow::Cow::Owned(v)
    }
}

/// A submitted batch whose results have not been read yet (`NetworkPlan::submit`). Dropping it
/// without collecting gives its buffers up (the GPU finishes the work regardless).
pub struct InFlight {
    device: wgpu::Device,
    /// Waited for alone: a later batch already submitted keeps running.
    submission: wgpu::SubmissionIndex,
    io: Vec<BatchIo>,
    pool: Arc<Mutex<Vec<BatchIo>>>,
    /// One per frame: the staging buffer's map result.
    mapped: Vec<mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>>,
    /// How many of `mapped` have answered.
    ready: usize,
    /// RGBA8 bytes per frame.
    bytes: usize,
    /// Time `submit` spent copying the frames in and recording the commands.
    pub upload: Duration,
    /// Time `queue.submit` itself took: next to nothing on a GPU; on a CPU driver that runs the
    /// commands as they are submitted (lavapipe), the network.
    pub submit: Duration,
}

impl InFlight {
    /// Whether the GPU has finished the batch, without waiting.
    pub fn is_done(&mut self) -> Result<bool, GpuError> {
        self.device.poll(wgpu::PollType::Poll).map_err(|e| read_error(e.to_string()))?;
        self.answered(false)
    }

    /// Waits until the GPU has finished the batch.
    pub fn wait(&mut self) -> Result<(), GpuError> {
        if self.answered(false)? {
            return Ok(());
        }
        let this = wgpu::PollType::Wait { submission_index: Some(self.submission.clone()), timeout: None };
        self.device.poll(this).map_err(|e| read_error(e.to_string()))?;
        // The submission is complete and its map callbacks have run.
        self.answered(true).map(|_| ())
    }

    /// Counts the map results that have arrived (`block`: wait for the next one); an error
    /// in any of them fails the batch.
    fn answered(&mut self, block: bool) -> Result<bool, GpuError> {
        while let Some(rx) = self.mapped.get(self.ready) {
            let got = if block {
                Some(rx.recv().map_err(|e| read_error(e.to_string()))?)
            } else {
                match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(e) => return Err(read_error(e.to_string())),
                }
            };
            match got {
                Some(r) => {
                    r.map_err(|e| read_error(e.to_string()))?;
                    self.ready += 1;
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Waits for the batch and returns RGB8 per frame, in order; the buffers go back to the
    /// plan's pool.
    pub fn collect(mut self) -> Result<Vec<Vec<u8>>, GpuError> {
        self.wait()?;
        self.read()
    }

    /// Reads a finished batch (`wait` or `is_done` first): RGBA8 repacked to RGB8.
    pub fn read(mut self) -> Result<Vec<Vec<u8>>, GpuError> {
        if !self.answered(false)? {
            return Err(read_error("the batch is not finished".into()));
        }
        let mut out = Vec::with_capacity(self.io.len());
        for b in &self.io {
            let view = b.staging.get_mapped_range(..).map_err(|e| read_error(e.to_string()))?;
            out.push(rgba_to_rgb(&view[..self.bytes]));
            drop(view);
            b.staging.unmap();
        }
        if let Ok(mut pool) = self.pool.lock() {
            pool.append(&mut self.io);
        }
        Ok(out)
    }
}

fn read_error(reason: String) -> GpuError {
    GpuError::Device { context: "reading results back".into(), reason }
}

/// RGBA8 to RGB8: the alpha byte of every pixel dropped.
fn rgba_to_rgb(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = vec![0u8; rgba.len() / 4 * 3];
    for (d, s) in rgb.chunks_exact_mut(3).zip(rgba.chunks_exact(4)) {
        d.copy_from_slice(&s[..3]);
    }
    rgb
}
