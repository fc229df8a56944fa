//! CLI entry: parse, set up logging, run the command, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::Parser;
use stylestream::app;
use stylestream::cli::{Cli, Command, LogFormat};
use stylestream::stop::{StopReason, StopToken};

fn main() -> ExitCode {
    // Mesa's Vulkan drivers warn on every start when this is unset (headless machines, CI).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    limit_malloc_arenas();
    let cli = Cli::parse();
    // Ctrl-C (and SIGTERM): stop the jobs, discard the outputs in progress, exit non-zero.
    // The service instead stops consuming and lets its jobs finish within its grace period.
    let shutdown = StopToken::new();
    let on_signal = shutdown.clone();
    let _ = ctrlc::set_handler(move || on_signal.stop(StopReason::Interrupted));
    let quiet = match &cli.command {
        Command::Stylize(a) => a.run.quiet,
        Command::Batch(a) => a.run.quiet,
        _ => false,
    };
    let serving = matches!(cli.command, Command::Serve(_));
    stylestream::telemetry::init_logging(
        if quiet {
            "error"
        } else if serving && cli.log == "warn" {
            "info"
        } else {
            &cli.log
        },
        cli.log_format == LogFormat::Json,
    );
    let result = match &cli.command {
        Command::Stylize(args) => app::stylize::stylize(args, &shutdown),
        Command::Bench(args) => match &args.video {
            Some(video) => app::bench_video::bench_video_command(args, video),
            None => app::bench::bench_command(args),
        },
        Command::Batch(args) => app::batch::batch(args, &shutdown).map(|s| {
            if !args.run.quiet {
                eprintln!("batch: {} styled, {} already done, {} failed", s.styled, s.already_done, s.failed);
            }
        }),
        Command::Serve(args) => {
            app::serve::serve(&args.config, args.metrics_addr.clone(), &shutdown).map_err(Into::into)
        }
        Command::Submit(args) => app::submit::submit(args),
        Command::Cancel(args) => app::cancel::cancel(args),
        Command::Models(cmd) => app::models::models(cmd),
        Command::Adapters => app::adapters(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", app::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// glibc gives threads up to 8 malloc arenas per core, and a long-lived engine starts decoder,
/// encoder and job threads for every job: each new arena keeps its high-water mark, so the
/// service's memory crept up job after job (+21 % from job 10 to job 100). Two arenas hold it
/// flat (+2 %); frames are large allocations (mmap'ed anyway), so the contention costs nothing
/// measurable. An operator's own MALLOC_ARENA_MAX wins. Runs before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none_or(|v| v.is_empty()) {
        // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
