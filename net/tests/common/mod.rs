//! What the network tests share: a node with a server on a free loopback
//! port, and reading a subscription up to a window's barrier.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::{Node, NodeConfig, Placement};
use dirigo_net::{Client, Output, Server, ServerConfig, WireValue};

/// A node of `shards` unpinned shards serving `cfg` on a free port.
pub(crate) fn serve(shards: usize, cfg: ServerConfig) -> Server {
    serve_on(
        NodeConfig {
            shards,
            ..Default::default()
        },
        cfg,
    )
}

/// A node of `node` (its shards unpinned) serving `cfg` on a free port.
pub(crate) fn serve_on(node: NodeConfig, cfg: ServerConfig) -> Server {
    let node = Node::start(NodeConfig {
        placement: Placement::Unpinned,
        ..node
    })
    .expect("node starts");
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..cfg
    };
    Server::builder(Arc::new(node))
        .config(cfg)
        .serve()
        .expect("serves")
}

/// Outputs of subscription `sub` until the barrier of `window`, decoded
/// as `T`s (other subscriptions' outputs are skipped).
pub(crate) fn read_window<T: WireValue>(c: &mut Client, sub: u64, window: u64) -> Vec<(u64, T)> {
    let mut out = Vec::new();
    loop {
        let (id, o) = c
            .next_output(Duration::from_secs(20))
            .expect("reads")
            .expect("an output within 20 s");
        if id != sub {
            continue;
        }
        match o {
            Output::Data { key, value, .. } => {
                out.push((key, T::from_binary(&value).expect("decodes")))
            }
            Output::Barrier { window: w } if w == window => return out,
            Output::Barrier { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Word counts of `lines`, the oracle of the wordcount app.
pub(crate) fn word_counts(lines: &[String]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for l in lines {
        for w in l.split_whitespace() {
            *m.entry(w.to_owned()).or_insert(0.0) += 1.0;
        }
    }
    m
}
