//! DAG shapes that stress what the engine computes per message. A lattice
//! (two operators per layer, each fed by both of the layer before) has 2^L
//! paths from its first layer to its sink: the learned cost of the path
//! ahead, which every policy hook sees, must not be found by walking them.

use std::time::{Duration, Instant};

use dirigo_engine::{AppBuilder, Context, Function, Merged, Node, NodeConfig, Placement, Stream};

/// Counts what it sees and emits nothing: only the first layer ever runs,
/// so the test measures what a message costs, not how many there are.
struct Absorb;
impl Function for Absorb {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, _key: u64, _v: u64, _ctx: &mut Context<'_, u64>) {
        st.0 += 1;
    }
}

#[test]
fn a_deep_lattice_runs_at_the_speed_of_a_chain() {
    const LAYERS: usize = 20; // 41 nodes, 2^20 paths from the first layer
    let node = Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        ..NodeConfig::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("lattice").slo(Duration::from_millis(100));
    let src = b.source::<u64>("events");
    let mut layer: [Stream<u64>; 2] = [
        b.operator("a0", Absorb, &[src]),
        b.operator("b0", Absorb, &[src]),
    ];
    for i in 1..LAYERS {
        layer = [
            b.operator(&format!("a{i}"), Absorb, &layer),
            b.operator(&format!("b{i}"), Absorb, &layer),
        ];
    }
    let _rx = b.sink("out", layer[0]);
    let _rx2 = b.sink("out2", layer[1]);
    let h = node.deploy(b.build().expect("valid app")).expect("deploys");
    let source = h.source::<u64>("events").expect("source");
    let started = Instant::now();
    for chunk in 0..20u64 {
        let batch: Vec<(u64, u64)> = (0..100).map(|i| (chunk * 100 + i, i)).collect();
        source
            .send_batch(batch, Duration::from_secs(10))
            .map_err(|r| r.error)
            .expect("accepted");
    }
    // 2,000 events, 4,000 runs: milliseconds when a message's path cost is
    // O(1), minutes when it walks every path.
    h.quiesce(Duration::from_secs(10))
        .expect("the lattice drains as fast as a chain would");
    let stats = node.stats().expect("the shard still answers");
    let app = stats.app("lattice").expect("the app's stats");
    assert_eq!(
        app.runs, 4_000,
        "each event ran once on each first-layer operator"
    );
    eprintln!(
        "2,000 events through a {LAYERS}-layer lattice in {:?}",
        started.elapsed()
    );
    node.shutdown();
}
