//! `dirigo`: a thin command-line front over the engine and the workloads.

mod demo;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Demo(args) => demo::run(args),
    };
    if let Err(e) = result {
        eprintln!("dirigo: {e}");
        std::process::exit(1);
    }
}
