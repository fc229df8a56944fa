//! CLI entry: parse, set up logging, run the command, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::Parser;
use stylestream::app;
use stylestream::cli::{Cli, Command};
use stylestream::model::gpu::GpuContext;

fn main() -> ExitCode {
    // Mesa's Vulkan drivers warn on every start when this is unset (headless machines, CI).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    // Ctrl-C: stop the pipeline, discard the output in progress, exit non-zero.
    let _ = ctrlc::set_handler(stylestream::pipeline::interrupt);
    let quiet = matches!(&cli.command, Command::Stylize(a) if a.quiet);
    init_logging(if quiet { "error" } else { &cli.log });
    let result = match &cli.command {
        Command::Stylize(args) => app::stylize(args),
        Command::Bench(args) => app::bench(args).map(|report| {
            let mut stdout = std::io::stdout();
            let _ = app::print_bench(&report, &mut stdout);
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            }
        }),
        Command::Models(cmd) => app::models(cmd),
        Command::Adapters => {
            let adapters = GpuContext::adapters();
            if adapters.is_empty() {
                eprintln!("no GPU adapters found");
            }
            for (i, a) in adapters.iter().enumerate() {
                println!("{i}: {a} [{}]", a.driver);
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: wgpu and others nest multi-line causes into their messages.
            let text = e.to_string();
            let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            eprintln!("error: {}", parts.join(" | "));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
