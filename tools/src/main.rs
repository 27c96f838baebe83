//! `dirigo`: a thin command-line front over the engine and the workloads.

mod demo;
mod node;

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dirigo",
    version,
    about = "Dirigo: self-scaling stateful actors on a thread-per-core node"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node in-process with built-in apps and a built-in bursty load;
    /// print per-app throughput, latency percentiles and lessee counts while
    /// it runs, and a summary at the end.
    Demo(demo::Args),
    /// Run a node on the network (binary protocol and HTTP) until SIGINT
    /// or SIGTERM, with the apps its config deploys at start.
    Node(node::Args),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match cli.cmd {
        Cmd::Demo(args) => demo::run(args).map_err(|e| (e.to_string(), 1)),
        Cmd::Node(args) => node::run(args).map_err(|e| (e.to_string(), e.exit_code())),
    };
    if let Err((e, code)) = code {
        eprintln!("dirigo: {e}");
        std::process::exit(code);
    }
}
