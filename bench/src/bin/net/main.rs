//! `net`: the node on the network, against a raw io_uring echo of the same
//! frames on the same core, in one run (issue 13).
//!
//! - Binary ingest throughput: one client thread sends ingest frames of
//!   1, 64 and 4096 events, up to `--window` unacknowledged, to a node of
//!   one pinned shard (a keyed count, closed by a barrier at the end and
//!   checked against the events sent); events/s and frames/s. Beside it, a
//!   glommio echo server pinned to the same core returns the same frames
//!   to the same client: frames/s of doing nothing but the socket.
//! - End-to-end latency at `--rate` events/s, open loop, one event per
//!   frame: a sender thread sends each event when due, a subscriber
//!   thread stamps each output as it arrives; latency is arrival minus the
//!   due time (no coordinated omission). The echo's round trip is measured
//!   the same way (due time to echo arrival).
//! - HTTP ingest, one event per request, keep-alive, `--http-conns`
//!   connections, on 2 shards: requests/s (wrk too, when installed).
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin net`. It prints the
//! cores it used and the CPU other processes took meanwhile.

mod echo;
mod http;
mod ingest;
mod latency;

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use clap::Parser;
use dirigo_engine::{Node, NodeConfig, Placement};
use dirigo_net::{Server, ServerConfig};

#[derive(Parser, Debug)]
#[command(about = "The node on the network against a raw io_uring echo of the same frames")]
struct Cli {
    /// Events per batch in the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,64,4096")]
    batch: Vec<usize>,
    /// Frames per throughput run (at most; large batches send fewer).
    #[arg(long, default_value_t = 100_000)]
    frames: usize,
    /// Events per throughput run, at most.
    #[arg(long, default_value_t = 4_000_000)]
    events: usize,
    /// Unacknowledged frames per connection.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Open-loop rate of the latency runs, events/s.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds per latency run.
    #[arg(long, default_value_t = 3)]
    latency_secs: u64,
    /// HTTP connections (one client thread each).
    #[arg(long, default_value_t = 4)]
    http_conns: usize,
    /// Seconds of HTTP load.
    #[arg(long, default_value_t = 3)]
    http_secs: u64,
    /// Runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

type Error = Box<dyn std::error::Error>;

/// A node of `shards` shards serving on loopback (ports chosen).
fn serve(shards: usize, placement: Placement) -> Result<Server, Error> {
    let node = Node::start(NodeConfig {
        shards,
        placement,
        ..Default::default()
    })?;
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        http: Some("127.0.0.1:0".parse()?),
        max_batch: 4096,
        max_frame: 8 << 20,
        ..Default::default()
    };
    Ok(Server::builder(Arc::new(node)).config(cfg).serve()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu0 = dirigo_bench::cpu::snap();
    let t0 = std::time::Instant::now();
    println!("net bench: {cores} cores; node of 1 pinned shard (core 0) for binary, 2 for HTTP; clients unpinned");
    ingest::report(&cli)?;
    latency::report(&cli)?;
    http::report(&cli)?;
    if let Some(c) = dirigo_bench::cpu::CpuUse::between(
        cpu0,
        dirigo_bench::cpu::snap(),
        t0.elapsed().as_secs_f64(),
    ) {
        println!(
            "\ncpu over the run: this process {:.1} core-s, others {:.1} core-s, of {:.1}",
            c.own_s, c.others_s, c.capacity_s
        );
    }
    Ok(())
}
