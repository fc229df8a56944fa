//! `stylestream-gpu`: `bench` (the network on one adapter; `--image`/`--save` style a still
//! and write it, to check it) and `adapters`, nothing else. No media stage is reachable from
//! it, so the linker keeps none of ffmpeg's shared libraries: the binary needs only glibc and
//! travels to a lent GPU in the same call as the race (scripts/device_race.sh), where the full
//! binary needs ~47 MiB of libraries sent ahead.

use std::process::ExitCode;

use clap::Parser;
use stylestream::app;
use stylestream::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    stylestream::telemetry::init_logging(&cli.log, cli.log_format == LogFormat::Json);
    let result = match &cli.command {
        Command::Bench(args) if args.video.is_none() => app::bench::bench_command(args),
        Command::Adapters => app::adapters(),
        _ => {
            eprintln!("error: stylestream-gpu runs only `bench` (without --video) and `adapters`; use stylestream");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", app::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
