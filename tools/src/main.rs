//! `dirigo`: the command line of a node: run one (`node`, or `demo` with
//! built-in apps and load in-process), and work with a running one over
//! its binary protocol (`remote`: deploy, send, tail, stats, ...).

mod demo;
mod inspect;
mod node;
mod remote;

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dirigo",
    version,
    about = "Dirigo: self-scaling stateful actors on a thread-per-core node",
    after_help = "Commands that talk to a node find it with --addr (or DIRIGO_ADDR) and present \
--token (or DIRIGO_TOKEN).\n\nExit codes: 0 done; 1 the operation failed; 2 usage or config error; \
3 cannot reach the node; 4 refused (token or limit).\n\nLogs go to stderr; RUST_LOG sets their level."
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
    /// Deploy an app of a catalog kind.
    Deploy(remote::admin::DeployArgs),
    /// Undeploy an app: its state is dropped, its subscribers are closed.
    Undeploy(remote::admin::NameArgs),
    /// List the deployed apps.
    Apps(remote::admin::AppsArgs),
    /// An app's stats, or the node's (every app, every shard).
    Stats(remote::admin::StatsArgs),
    /// Close a window of an app: a barrier at every source.
    Barrier(remote::admin::BarrierArgs),
    /// Checkpoint a durable app now.
    Checkpoint(remote::admin::NameArgs),
    /// Send JSON lines (stdin or --file) to an app's source, in batches.
    Send(remote::send::SendArgs),
    /// Print a sink's outputs as JSON lines as they come.
    Tail(remote::tail::TailArgs),
    /// A live view of a node: per app throughput, latency, SLO
    /// satisfaction, queueing and lessees; per shard busy share.
    Top(remote::top::TopArgs),
    /// What is on disk in a data folder, an app's folder or a segment
    /// file: checkpoints, log segments, spill files; every checksum checked.
    Inspect(inspect::Args),
    /// Open-loop load from a built-in generator: latency from each event's
    /// due time to its output, a progress line, a summary and an .hgrm
    /// percentile file.
    Load(remote::load::LoadArgs),
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
        Cmd::Deploy(a) => remote_result(remote::admin::deploy(a)),
        Cmd::Undeploy(a) => remote_result(remote::admin::undeploy(a)),
        Cmd::Apps(a) => remote_result(remote::admin::apps(a)),
        Cmd::Stats(a) => remote_result(remote::admin::stats(a)),
        Cmd::Barrier(a) => remote_result(remote::admin::barrier(a)),
        Cmd::Checkpoint(a) => remote_result(remote::admin::checkpoint(a)),
        Cmd::Send(a) => remote_result(remote::send::send(a)),
        Cmd::Tail(a) => remote_result(remote::tail::tail(a)),
        Cmd::Load(a) => remote_result(remote::load::load(a)),
        Cmd::Inspect(a) => remote_result(inspect::run(a)),
        Cmd::Top(a) => remote_result(remote::top::top(a)),
    };
    if let Err((e, code)) = code {
        eprintln!("dirigo: {e}");
        std::process::exit(code);
    }
}

/// A remote command's error with its exit code.
fn remote_result(r: Result<(), remote::CliError>) -> Result<(), (String, i32)> {
    r.map_err(|e| (e.to_string(), e.exit_code()))
}
