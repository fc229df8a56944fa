//! Command-line interface: the commands, their options and their help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stylestream",
    version,
    about = "Repaint images in the style of a painting with a style-transfer network on the GPU (wgpu).",
    long_about = "Repaint images in the style of a painting with a feed-forward style-transfer network \
(Johnson et al. 2016) running as hand-written WGSL compute shaders on wgpu: Vulkan, Metal or DX12 GPUs, \
or Mesa lavapipe on a CPU.\n\nModels are safetensors or ONNX files; `--model udnie` also finds \
$STYLESTREAM_MODELS_DIR/udnie.safetensors (or udnie.onnx). `stylestream models fetch mosaic` downloads \
a model of the ONNX model zoo.",
    after_help = "Examples:\n  stylestream stylize photo.jpg -o photo-udnie.png --model udnie.safetensors\n  \
stylestream bench --model udnie.safetensors --size 640x360 --frames 5\n  stylestream adapters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level or filter for diagnostics on stderr (e.g. info, debug, stylestream=debug).
    #[arg(long, global = true, default_value = "warn", env = "STYLESTREAM_LOG")]
    pub log: String,
    /// Log lines as text, or as JSON objects (for log collectors).
    #[arg(long, global = true, value_enum, default_value = "text", env = "STYLESTREAM_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Style an image, a video (audio copied) or a sequence of frames, and write the result.
    Stylize(StylizeArgs),
    /// Measure the network's speed on the GPU with a synthetic frame. It times a plan directly
    /// (upload, GPU, readback), not through the engine: the device, not the pipeline around it.
    Bench(BenchArgs),
    /// List the GPU adapters stylestream can use, in the order `--adapter` counts them.
    Adapters,
    /// Style every video × every style that is not done yet, incrementally: outputs already
    /// complete (same video content, same model, per their manifest) are skipped without GPU
    /// work, so adding a style or a video processes only the new pairs. With --watch, keeps
    /// watching the inputs and styles new or changed videos as they arrive.
    Batch(BatchArgs),
    /// Run the service: take trigger events from RabbitMQ, read inputs from and write styled
    /// videos to object storage (file://, az://, s3://), with manifests, job logs and metrics.
    /// Jobs stream through one long-lived dataflow engine (GPUs stay warm); a status page,
    /// /jobs, /metrics and health are served on --metrics-addr.
    Serve(ServeArgs),
    /// Publish one job event to the service's queue (with publisher confirms) and print it.
    Submit(SubmitArgs),
    /// Cancel a job by its id on every running service instance: a running job stops and
    /// publishes nothing, a waiting one never starts; either is dead-lettered as `cancelled`.
    Cancel(CancelArgs),
    /// Style models: list the local ones, fetch one from the ONNX model zoo, convert ONNX to
    /// safetensors.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The .onnx and .safetensors models in the models directory, with their architecture,
    /// parameter count and FLOPs per output pixel.
    List {
        /// Models directory [default: $STYLESTREAM_MODELS_DIR].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// One JSON object per model on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Download a zoo model (mosaic, candy, rain-princess, udnie, pointilism) into the models
    /// directory as NAME.onnx, verifying its pinned sha256; or any file with --url and --sha256.
    /// Atomic: nothing is left behind unless the checksum matches.
    Fetch {
        /// Zoo model name, or the file name (without .onnx) to save --url as.
        name: String,
        /// Models directory [default: $STYLESTREAM_MODELS_DIR].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Download this URL instead of the zoo's (needs --sha256).
        #[arg(long, value_name = "URL", requires = "sha256")]
        url: Option<String>,
        /// Expected sha256 of the file (64 hex digits); overrides the pinned one.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Print nothing but errors (no progress bar).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Convert an ONNX model to a safetensors file plus its network description (.toml), for
    /// `stylize --model OUT.safetensors --network OUT.toml`.
    Convert {
        /// The .onnx model.
        input: PathBuf,
        /// The .safetensors file to write.
        output: PathBuf,
        /// The description to write [default: OUTPUT with the extension .toml].
        #[arg(long, value_name = "FILE")]
        description: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(after_help = "The broker URL (with credentials) comes from $STYLESTREAM_AMQP_URL (or the \
variable named by broker.url_env); store credentials from AZURE_STORAGE_* / AWS_* variables or \
storage.credentials_file. SIGTERM or Ctrl-C: stop consuming, finish the jobs in flight within \
service.shutdown_grace_secs, hand the rest back.\n\nExample:\n  stylestream serve --config config/service.toml --metrics-addr 127.0.0.1:9898")]
pub struct ServeArgs {
    /// Service configuration (see config/service.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (overrides the config).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  stylestream cancel --config config/service.toml talk-udnie")]
pub struct CancelArgs {
    /// The job's id (the event's `id`, or its message id).
    pub id: String,
    /// Service configuration to take the broker settings from (queue name, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  stylestream submit --input incoming/talk.mp4 --style udnie --output-prefix styled/"
)]
pub struct SubmitArgs {
    /// Input video object key (relative to the service's media store).
    #[arg(long, value_name = "KEY")]
    pub input: Option<String>,
    /// Or: a prefix of stored image frames (needs --fps or a fps.txt object there).
    #[arg(long, value_name = "PREFIX", conflicts_with = "input")]
    pub input_prefix: Option<String>,
    /// Style: a model name in the service's models directory.
    #[arg(long, value_name = "NAME")]
    pub style: String,
    /// Output video object key.
    #[arg(long, value_name = "KEY")]
    pub output: Option<String>,
    /// Or: an output prefix (`<prefix><input stem>.<style>.<ext>`).
    #[arg(long, value_name = "PREFIX", conflicts_with = "output")]
    pub output_prefix: Option<String>,
    /// Or, for --input-prefix: the styled frames back as frames under this prefix (same names
    /// and formats; only new and changed frames are styled).
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["output", "output_prefix"])]
    pub output_frames_prefix: Option<String>,
    /// Quality of JPEG frames written back (1-100; default: the service's).
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: Option<u8>,
    /// Job id (names the job's logs); default: derived from the message.
    #[arg(long)]
    pub id: Option<String>,
    /// Frame rate of a frame prefix.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Service configuration to take the broker settings from (queue name, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Outputs are OUT/<video stem>.<style>.<ext>, each with <output>.manifest.json \
(input sha256, model sha256, frames) written after the video is complete.\n\nExample:\n  \
stylestream batch videos/ -o styled/ --style udnie --style wave --workers 2")]
pub struct BatchArgs {
    /// Videos, or directories whose video files (by extension: mp4, mkv, mov, webm, avi, m4v)
    /// are taken, not recursing.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: PathBuf,
    /// A style: a model name (looked up in $STYLESTREAM_MODELS_DIR) or a .safetensors path;
    /// repeatable.
    #[arg(long = "style", short = 's', required = true, value_name = "MODEL")]
    pub styles: Vec<String>,
    /// Network description of the styles (see `stylize --network`).
    #[arg(long, value_name = "NAME|FILE", default_value = "transformnet-tf")]
    pub network: String,
    /// Container of the outputs (the extension): the input's own when not given.
    #[arg(long, value_name = "EXT")]
    pub format: Option<String>,
    /// Videos in progress at once in the dataflow engine (the next starts as soon as one ends).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Keep running: rescan the inputs every SECS seconds and style what is new (Ctrl-C stops).
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
    /// Which GPU adapter workers count from (see `stylestream adapters`).
    #[arg(long, value_name = "INDEX")]
    pub adapter: Option<usize>,
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Style model: a .safetensors or .onnx file, or a name looked up in
    /// $STYLESTREAM_MODELS_DIR (NAME.safetensors, then NAME.onnx).
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: String,
    /// Network description of a .safetensors model: `transformnet-tf` (the default, for the
    /// shared pretrained models), `transformnet-torch`, or a path to a description .toml (see
    /// pipelines/networks/). Ignored for .onnx models: their graph is the description.
    #[arg(long, value_name = "NAME|FILE", default_value = "transformnet-tf")]
    pub network: String,
    /// Which GPU adapter to use (see `stylestream adapters`); the first by default.
    #[arg(long, value_name = "INDEX")]
    pub adapter: Option<usize>,
}

#[derive(Debug, Args)]
pub struct StylizeArgs {
    /// What to style: a PNG/JPEG image, a video (anything ffmpeg reads: mp4, mkv, mov, webm,
    /// ...), a directory of PNG/JPEG frames (taken in name order), or a printf pattern such as
    /// `frames/%05d.png`. A video is opened as ffmpeg would: files it refers to (concat lists,
    /// HLS/DASH playlists, image2 patterns) are read too, so name only files you trust (the
    /// service opens stored objects restricted: self-contained containers only, with limits).
    /// A store URL (`file:///dir/`, `az://container/prefix/`, `s3://bucket/prefix/`) names the
    /// PNG/JPEG frames under it: they are styled back as frames to the store URL given as
    /// OUTPUT, same names and formats, incrementally (a rerun styles only new and changed
    /// frames, and removes the outputs of deleted ones). Credentials come from AZURE_STORAGE_*
    /// / AWS_* variables.
    pub input: String,
    /// Where to write: an image (.png, .jpg), a video (the extension picks the container:
    /// .mp4, .m4v, .mov, .mkv, .webm, .avi), or a directory (an existing empty one, or a path
    /// ending in /) for PNG frames. Written atomically: nothing appears there unless it
    /// completes; new files follow the umask. An output that is the input is refused. For a
    /// store URL input: a store URL (or a local directory) for the styled frames, each written
    /// atomically as it is done.
    #[arg(long, short = 'o', value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Quality of JPEG frames written back to a store (1-100).
    #[arg(long, default_value_t = 90, value_name = "Q", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Frame rate of an image-sequence input (25, 29.97 or 30000/1001); default: the
    /// sequence's fps.txt.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub fps: Option<crate::frame::Rate>,
    /// Another video to style in the same dataflow, as INPUT=OUTPUT (repeatable). Each has its
    /// own sink: a slow or failing one does not hold back the others.
    #[arg(long = "and", value_name = "IN=OUT")]
    pub and: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How styled video is encoded.
#[derive(Debug, Clone, Args)]
pub struct EncodeArgs {
    /// Video encoder (ffmpeg name): libx264, libx265, libvpx-vp9, mpeg4, ...
    #[arg(long, default_value = "libx264", value_name = "NAME")]
    pub codec: String,
    /// Constant rate factor of the video encoder (x264: 0 lossless .. 51; 18 looks lossless).
    #[arg(long, default_value_t = 18, value_name = "N")]
    pub crf: u32,
    /// Encoder speed preset for x264/x265 (ultrafast, veryfast, fast, medium, slow, ...).
    #[arg(long, default_value = "medium", value_name = "PRESET")]
    pub preset: String,
}

impl EncodeArgs {
    pub fn settings(&self) -> crate::media::video_out::EncodeSettings {
        crate::media::video_out::EncodeSettings {
            codec: self.codec.clone(),
            crf: self.crf,
            preset: self.preset.clone(),
        }
    }
}

/// Several processes, possibly on several hosts.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Run the dataflow over N processes (on one or several hosts); needs --hostfile. Every
    /// process runs the same command with its own --process; process 0 reads the input and
    /// writes the output, the others only style frames.
    #[arg(long, value_name = "N")]
    pub processes: Option<usize>,
    /// This process's index, 0 .. N-1.
    #[arg(long, value_name = "I")]
    pub process: Option<usize>,
    /// File with one `host:port` per line, one line per process, in process order. The
    /// cluster's traffic (frames, in both directions) is neither authenticated nor encrypted:
    /// every name must resolve to a private, loopback or link-local address.
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// Allow cluster hosts with public addresses (only over a network you trust end to end,
    /// such as a VPN or an SSH tunnel: the transport has no authentication or encryption).
    #[arg(long)]
    pub allow_public_cluster: bool,
}

/// How the dataflow runs and reports.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Progress on stderr: auto (a bar on a terminal), bar, json (one line per second), none.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: crate::telemetry::progress::ProgressMode,
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Frames queued between decode, GPU and encode (bounds memory: at most 2N + 3 frames).
    /// [default: 4, or the config's]
    #[arg(long, value_name = "N")]
    pub max_frames_in_flight: Option<usize>,
    /// Worker threads of the timely dataflow, each with its own GPU device (worker i uses
    /// adapter i mod adapters).
    /// [default: 1, or the config's]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Dataflow: consecutive frames sent to one worker and styled with one GPU submission
    /// (larger batches amortise set-up; a failure retries the whole batch). At least this many
    /// frames are kept in flight.
    /// [default: 1, or the config's]
    #[arg(long, value_name = "N")]
    pub frames_per_batch: Option<u64>,
    /// Dataflow: retries of a frame that failed on a worker, each on another worker.
    /// [default: 2, or the config's]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Run configuration (workers, GPUs, batching, cluster); see config/*.toml. Flags given on
    /// the command line win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Precision of weights and activations on the GPU: f32, f16 (needs SHADER_F16; arithmetic
    /// and accumulation stay f32), or auto: f32 on CPU adapters, f16 on GPUs whose f16
    /// self-check passes.
    /// [default: auto, or the config's]
    #[arg(long, value_enum, value_name = "PRECISION")]
    pub precision: Option<crate::model::gpu::Precision>,
    /// Kernel set: auto (a fixed set on CPU adapters; on GPUs, timed), timed (each candidate
    /// timed at the frame size, the fastest kept; cached in ~/.cache/stylestream/kernels.json
    /// or $STYLESTREAM_KERNEL_CACHE), or one set: subgroup, subgroup-unfused, plain, plain-unfused,
    /// tiled (3x3 layers as a tiled implicit GEMM in workgroup memory, for GPUs; 64-pixel x
    /// 64-channel tiles), tiled-32x32, tiled-128x64 (other tile sizes).
    /// [default: auto, or the config's]
    #[arg(long, value_enum, value_name = "SET")]
    pub kernels: Option<crate::model::gpu::KernelChoice>,
    /// Testing hook: frame K fails its first N styling attempts (N = 0: every attempt).
    #[arg(long, value_name = "K:N", hide = true, value_parser = parse_fail)]
    pub fail_frame: Option<(u64, u32)>,
}

fn parse_fail(s: &str) -> Result<(u64, u32), String> {
    let (k, n) = s.split_once(':').ok_or("expected K:N")?;
    Ok((k.parse().map_err(|_| "K must be a frame index")?, n.parse().map_err(|_| "N must be a count")?))
}

fn parse_rate(s: &str) -> Result<crate::frame::Rate, String> {
    crate::frame::Rate::parse(s).ok_or_else(|| format!("`{s}` is not a frame rate (e.g. 25, 29.97, 30000/1001)"))
}

#[derive(Debug, Args)]
#[command(after_help = "Without --video, bench times a plan directly (upload, GPU, readback of a synthetic \
frame), not through the engine: the device, not the pipeline around it. With --video, it styles the video \
end to end through the engine and reports the end-to-end rate (e2e_fps), the network's rate on up to 64 of \
the video's frames held in memory (model_fps), what the pipeline carries with the network replaced by a \
copy on the CPU (ceiling_fps), and the wall time of every stage (decode, conversion in, upload, GPU, \
readback, conversion out, encode, mux) with the one that limits. `--model none` runs only that copy.\n\n\
Examples:\n  stylestream bench --model udnie --size 1280x720 --frames 10\n  \
stylestream bench --video talk.mp4 --model udnie --preset superfast --crf 20 --json\n  \
stylestream bench --video talk.mp4 --model none")]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Style this video end to end through the engine and report its rates and stage table
    /// (see below). `--model none`: the network is replaced by a copy on the CPU.
    #[arg(long, value_name = "INPUT")]
    pub video: Option<PathBuf>,
    /// With --video: where the styled video goes [default: a temporary file, removed].
    #[arg(long, short = 'o', value_name = "OUTPUT", requires = "video")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub encode: EncodeArgs,
    /// With --video: frames in flight between decode, GPU and encode (as `stylize`).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_frames_in_flight: usize,
    /// With --video: consecutive frames styled with one GPU submission (as `stylize`).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub frames_per_batch: u64,
    /// With --video: dataflow workers, each with its own device (as `stylize`).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360", value_parser = parse_size, conflicts_with = "image")]
    pub size: (u32, u32),
    /// Time this PNG/JPEG still (at its own size) instead of a synthetic test card.
    #[arg(long, value_name = "STILL", conflicts_with = "video")]
    pub image: Option<PathBuf>,
    /// Write the styled frame (the test card, or --image) to this PNG/JPEG, to check it.
    #[arg(long, value_name = "OUTPUT", conflicts_with = "video")]
    pub save: Option<PathBuf>,
    /// Frames to time (after one untimed warm-up frame, which compiles the kernels).
    #[arg(long, default_value_t = 5)]
    pub frames: u32,
    /// Print one JSON object as the last line (keys: adapter, width, height, frames,
    /// ms_per_frame, fps, gflops, kernels, precision, variant, variant_source).
    #[arg(long)]
    pub json: bool,
    /// Use the plain conv kernels even where the adapter has subgroups (for comparison).
    #[arg(long)]
    pub no_subgroups: bool,
    /// Also time the frames in batches of N per GPU submission (as `--frames-per-batch` does),
    /// against one frame per submission in the same run.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: u32,
    /// Compile the shaders with naga's runtime checks (index clamps, loop bounds) instead of
    /// trusted, to compare the two.
    #[arg(long)]
    pub checked_shaders: bool,
    /// Unfused instance norm, for comparison: its own statistics pass (not the conv's
    /// epilogue) and its own apply pass (not the next conv's input loads).
    #[arg(long)]
    pub unfused_norm: bool,
    /// Precision of weights and activations: f32, f16 (needs SHADER_F16; arithmetic and
    /// accumulation stay f32), or auto (f32 on CPU adapters, f16 on GPUs whose self-check passes).
    #[arg(long, value_enum, default_value = "auto", value_name = "PRECISION")]
    pub precision: crate::model::gpu::Precision,
    /// Kernel set: auto (fixed on CPU adapters, timed on GPUs), timed, subgroup,
    /// subgroup-unfused, plain, plain-unfused, tiled, tiled-32x32 or tiled-128x64 (see
    /// `stylize --help`).
    #[arg(long, value_enum, default_value = "auto", value_name = "SET")]
    pub kernels: crate::model::gpu::KernelChoice,
    /// Also build a second plan of WIDTHxHEIGHT after the first, on the same device (its
    /// pipelines come from the device's cache) and on a fresh device (compiled anew), and
    /// report both times (plan build + first frame).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub second_plan: Option<(u32, u32)>,
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|&n| (1..=16384).contains(&n));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("`{s}`: width and height must be whole numbers from 1 to 16384")),
    }
}
