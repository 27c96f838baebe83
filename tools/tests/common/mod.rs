//! What the tests of the `dirigo` binary share: starting `dirigo node` as
//! a child process and learning its binary protocol's address from the
//! line it prints when it serves.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Start `dirigo node --config cfg` (its log level from `TEST_RUST_LOG`,
/// `warn` by default); the child and its binary protocol's address.
pub(crate) fn start_node(cfg: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dirigo"))
        .args(["node", "--config"])
        .arg(cfg)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("dirigo starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the node's first line");
    let addr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}
