//! The `dirigo` command line against a node, both as child processes over
//! loopback: deploy, send, tail, barrier, stats, checkpoint and undeploy
//! round trip with the outputs checked against what was sent; and every
//! bad input with its one line on stderr and its exit code (0 done, 1
//! failed, 2 usage or config, 3 unreachable, 4 refused).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const ADMIN: &str = "admin-secret";

/// A node of this test: killed when dropped.
struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path) -> Node {
    let cfg = dir.join("node.toml");
    let text = format!(
        "[node]\nshards = 2\nplacement = \"unpinned\"\ndata_dir = {:?}\n\n\
         [server]\nlisten = \"127.0.0.1:0\"\nhttp = false\nadmin_token = \"{ADMIN}\"\nmax_subscribers = 1\n",
        dir.join("data")
    );
    std::fs::write(&cfg, text).unwrap();
    let (child, addr) = common::start_node(&cfg);
    Node {
        child,
        addr: addr.to_string(),
    }
}

/// `dirigo ARGS` against `node` with `token`, stdin from `input`.
fn dirigo(node: &Node, token: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dirigo"))
        .args(args)
        .env("DIRIGO_ADDR", &node.addr)
        .env("DIRIGO_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dirigo runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run and require exit code `code`; stdout, and stderr.
fn expect(node: &Node, token: &str, args: &[&str], input: &str, code: i32) -> (String, String) {
    let o = dirigo(node, token, args, input);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(
        o.status.code(),
        Some(code),
        "dirigo {args:?}: stdout {out:?} stderr {err:?}"
    );
    (out, err)
}

/// Events of the `aggregate` kind: `n` rows over 5 keys; the sum per key.
fn rows(n: u64) -> (String, std::collections::BTreeMap<String, f64>) {
    let mut lines = String::new();
    let mut sums = std::collections::BTreeMap::new();
    for i in 0..n {
        let key = format!("k{}", i % 5);
        lines += &format!("{{\"key\":\"{key}\",\"value\":{}}}\n", i);
        *sums.entry(key).or_insert(0.0) += i as f64;
    }
    (lines, sums)
}

#[test]
fn deploy_send_tail_stats_checkpoint_and_undeploy_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let deploy = [
        "deploy",
        "aggregate",
        "totals",
        "-p",
        "fn=sum",
        "--slo",
        "50ms",
        "--durable",
    ];
    let (out, _) = expect(&node, ADMIN, &deploy, "", 0);
    assert!(out.contains("deployed totals"), "{out}");
    let (out, _) = expect(&node, ADMIN, &["apps"], "", 0);
    assert_eq!(out.trim(), "totals");

    // A tail subscribed before the events sees every window row.
    let tail = subscribed(
        &node,
        &["tail", "totals", "out", "--count", "5", "--duration", "60s"],
    );
    let (lines, sums) = rows(2000);
    let (out, _) = expect(
        &node,
        ADMIN,
        &["send", "totals", "events", "--batch", "64"],
        &lines,
        0,
    );
    assert_eq!(out.trim(), "acknowledged 2000 events");
    expect(&node, ADMIN, &["barrier", "totals", "--window", "1"], "", 0);
    let got = tail.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(0));
    let mut seen = std::collections::BTreeMap::new();
    for l in text(&got.stdout).lines() {
        let row: Value = serde_json::from_str(l).unwrap();
        assert_eq!(row[0], 1, "{l}");
        seen.insert(
            row[1].as_str().unwrap().to_owned(),
            row[2].as_f64().unwrap(),
        );
    }
    assert_eq!(seen, sums);

    let (out, _) = expect(&node, ADMIN, &["stats", "totals", "--json"], "", 0);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["delivered"], 5);
    let (one, _) = expect(&node, ADMIN, &["stats", "totals"], "", 0);
    assert_eq!(one.lines().count(), 2, "a header and the app's row: {one}");
    assert!(one.lines().nth(1).unwrap().starts_with("totals "), "{one}");
    let (table, _) = expect(&node, ADMIN, &["stats"], "", 0);
    assert!(table.lines().any(|l| l.starts_with("totals ")), "{table}");
    assert!(table.contains("shard"), "{table}");
    // An open window's events, then a checkpoint: they are its state.
    let (open, open_sums) = rows(50);
    expect(&node, ADMIN, &["send", "totals", "events"], &open, 0);
    let (out, _) = expect(&node, ADMIN, &["checkpoint", "totals"], "", 0);
    assert!(out.starts_with("checkpoint "), "{out}");
    inspect_the_data_folder(&node, &dir.path().join("data"), &open_sums);
    // A durable word count's open window, through --dump.
    let wc = ["deploy", "wordcount", "w", "--durable"];
    expect(&node, ADMIN, &wc, "", 0);
    expect(
        &node,
        ADMIN,
        &["send", "w", "lines"],
        "\"a b a\"\n\"b a\"\n",
        0,
    );
    expect(&node, ADMIN, &["checkpoint", "w"], "", 0);
    let w = dir.path().join("data").join("w");
    let dump = ["inspect", "--dump", "count", w.to_str().unwrap()];
    let (out, _) = expect(&node, "", &dump, "", 0);
    let d: Value = serde_json::from_str(&out).unwrap();
    let words = serde_json::json!([{"word": "a", "count": 3}, {"word": "b", "count": 2}]);
    assert_eq!(d["state"], words, "{d}");
    expect(&node, ADMIN, &["undeploy", "w"], "", 0);
    expect(&node, ADMIN, &["undeploy", "totals"], "", 0);
    let (out, _) = expect(&node, ADMIN, &["apps", "--json"], "", 0);
    assert_eq!(out.trim(), "[]");
}

/// `dirigo inspect` beside the running node: the checkpoint and the log
/// (2000 events, a barrier, 50 events) as they are; the aggregate's state
/// (`--dump`) the sums of the 50 in the open window; then a flipped byte in the
/// log reported with its file and offset, exit 1.
fn inspect_the_data_folder(
    node: &Node,
    data: &Path,
    open: &std::collections::BTreeMap<String, f64>,
) {
    let data_s = data.to_str().unwrap();
    let (out, _) = expect(node, "", &["inspect", data_s], "", 0);
    assert!(
        out.contains("app folder") && out.contains("totals"),
        "{out}"
    );
    assert!(out.contains("full"), "{out}");
    assert!(
        out.contains("2051 entries") && out.contains("damage: none"),
        "{out}"
    );
    let (json, _) = expect(node, "", &["inspect", "--json", data_s], "", 0);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["checkpoints"][0]["kind"], "full", "{v}");
    assert_eq!(v[0]["log"][0]["end_seq"], 2051, "{v}");
    let app = data.join("totals");
    let dump = ["inspect", "--dump", "aggregate", app.to_str().unwrap()];
    let (out, _) = expect(node, "", &dump, "", 0);
    let d: Value = serde_json::from_str(&out).unwrap();
    let state: std::collections::BTreeMap<String, f64> = d["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["sum"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(&state, open, "{d}");
    let (_, err) = expect(
        node,
        "",
        &["inspect", "--dump", "nope", app.to_str().unwrap()],
        "",
        1,
    );
    assert!(err.contains("nope"), "{err}");
    let seg = v[0]["log"][0]["segment"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (out, _) = expect(node, "", &["inspect", data_s], "", 1);
    assert!(out.contains("DAMAGED") && out.contains(&seg), "{out}");
    assert!(
        out.contains("at byte 96"),
        "the damaged record header: {out}"
    );
    let (out, _) = expect(node, "", &["inspect", &seg], "", 1);
    assert!(out.contains("DAMAGED"), "{out}");
    bytes[100] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (_, err) = expect(node, "", &["inspect", "/no/such/place"], "", 2);
    assert!(err.contains("no such file"), "{err}");
}

/// `dirigo tail ...` in the background, once it says it has subscribed
/// (its stderr's first line); the rest of its stderr is not read.
fn subscribed(node: &Node, args: &[&str]) -> Child {
    let mut tail = Command::new(env!("CARGO_BIN_EXE_dirigo"))
        .args(args)
        .env("DIRIGO_ADDR", &node.addr)
        .env("DIRIGO_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut err = BufReader::new(tail.stderr.take().unwrap());
    err.read_line(&mut first).unwrap();
    assert!(first.contains("subscribed"), "{first:?}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    tail
}

#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let e = |args: &[&str], input: &str, code: i32, says: &str| {
        let (_, err) = expect(&node, ADMIN, args, input, code);
        assert!(
            err.contains(says),
            "dirigo {args:?}: {err:?} lacks {says:?}"
        );
    };
    e(&["deploy", "aggregate", "a", "-p", "fn=sum"], "", 0, "");
    // Usage: flags, parameters (2); failed (1): unknown kind, app, sink, a
    // taken name. Each with the words its one line must say.
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["deploy", "aggregate", "b", "--slo", "fast"],
            2,
            "not a duration",
        ),
        (&["deploy", "aggregate", "b", "-p", "fn"], 2, "KEY=VALUE"),
        (
            &["deploy", "aggregate", "b", "-p", "fn=nosuch"],
            2,
            "params.fn",
        ),
        (
            &["send", "a", "events", "--file", "/no/such/file"],
            2,
            "/no/such/file",
        ),
        (&["stats", "--addr", "no-such-host.invalid:1"], 2, "--addr"),
        (&["apps", "--connect-timeout", "0"], 2, "--connect-timeout"),
        (
            &["send", "a", "events", "--window", "100000"],
            2,
            "--window",
        ),
        (&["deploy", "nokind", "b"], 1, "nokind"),
        (
            &["deploy", "aggregate", "a", "-p", "fn=sum"],
            1,
            "already deployed",
        ),
        (&["stats", "nope"], 1, "nope"),
        (&["tail", "a", "nosink", "--count", "1"], 1, "nosink"),
        (&["checkpoint", "a"], 1, "not durable"),
    ];
    for &(args, code, says) in cases {
        e(args, "", code, says);
    }
    // A line that is not JSON: named by number; the rest sent (skip) or
    // not (stop), and the count acknowledged says which.
    let input = "{\"key\":\"x\",\"value\":1}\nnot json\n{\"key\":\"y\",\"value\":2}\n";
    let (out, err) = expect(&node, ADMIN, &["send", "a", "events"], input, 1);
    assert!(err.contains("line 2: not JSON"), "{err}");
    assert_eq!(out.trim(), "acknowledged 1 events");
    let skip = ["send", "a", "events", "--on-error", "skip"];
    let (out, _) = expect(&node, ADMIN, &skip, input, 1);
    assert_eq!(out.trim(), "acknowledged 2 events");
    // JSON the source refuses: that line, the others of its batch sent.
    let input = "{\"key\":\"x\",\"value\":1}\n{\"nokey\":1}\n{\"key\":\"y\",\"value\":2}\n";
    let (out, err) = expect(&node, ADMIN, &skip, input, 1);
    assert!(err.contains("line 2: refused"), "{err}");
    assert_eq!(out.trim(), "acknowledged 2 events");
    // Under stop: the line before the refused one is sent, the one after
    // it is not.
    let (out, err) = expect(&node, ADMIN, &["send", "a", "events"], input, 1);
    assert!(err.contains("line 2: refused"), "{err}");
    assert_eq!(out.trim(), "acknowledged 1 events");
    // A line over the frame limit is named, and the others still go.
    let huge = format!(
        "{{\"key\":\"x\",\"value\":1}}\n\"{}\"\n{{\"key\":\"y\",\"value\":2}}\n",
        "w".repeat(2 << 20)
    );
    let (out, err) = expect(&node, ADMIN, &skip, &huge, 1);
    assert!(err.contains("line 2: over the node's frame limit"), "{err}");
    assert_eq!(out.trim(), "acknowledged 2 events");
    // Refused (4): a wrong token; over a limit.
    let (_, err) = expect(&node, "wrong", &["apps"], "", 4);
    assert!(err.contains("Unauthorized"), "{err}");
    let (_, err) = expect(&node, "", &["apps"], "", 4);
    assert!(err.contains("Unauthorized"), "{err}");
    // One subscriber per sink in this node's config: a second is refused.
    let mut first = subscribed(&node, &["tail", "a", "out", "--duration", "60s"]);
    e(&["tail", "a", "out", "--count", "1"], "", 4, "subscribers");
    // Its app undeployed, a tail ends with 1 (failed), not 4 (refused).
    e(&["undeploy", "a"], "", 0, "");
    assert_eq!(first.wait().unwrap().code(), Some(1));
    // --with-key and --barriers: a window's row with its key, then its
    // barrier, as JSON lines.
    e(&["deploy", "aggregate", "c", "-p", "fn=sum"], "", 0, "");
    let keyed = [
        "tail",
        "c",
        "out",
        "--with-key",
        "--barriers",
        "--duration",
        "2s",
    ];
    let tail = subscribed(&node, &keyed);
    e(
        &["send", "c", "events"],
        "{\"key\":\"x\",\"value\":1}\n",
        0,
        "",
    );
    e(&["barrier", "c", "--window", "7"], "", 0, "");
    let got = tail.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(0));
    let lines: Vec<Value> = text(&got.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]["key"].is_u64(), "{lines:?}");
    assert_eq!(lines[0]["value"], serde_json::json!([7, "x", 1.0]));
    assert_eq!(lines[1], serde_json::json!({"barrier": 7}));
    // Unreachable (3): nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    e(&["apps", "--addr", &addr], "", 3, "cannot reach the node");
    // clap's own usage errors are 2 too.
    e(&["deploy"], "", 2, "Usage");
}

#[test]
fn load_and_top_against_a_node_report_latency_and_an_hgrm_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    expect(
        &node,
        ADMIN,
        &["deploy", "sensors", "s", "--slo", "20ms"],
        "",
        0,
    );
    let hgrm = dir.path().join("run.hgrm");
    let hgrm_s = hgrm.to_str().unwrap();
    let args = [
        "load",
        "s",
        "readings",
        "--generator",
        "sensors",
        "--sink",
        "alert-sink",
        "--rate",
        "5000",
        "--duration",
        "2s",
        "--pattern",
        "poisson",
        "--drain",
        "1s",
        "--hgrm",
        hgrm_s,
    ];
    let load = Command::new(env!("CARGO_BIN_EXE_dirigo"))
        .args(args)
        .env("DIRIGO_ADDR", &node.addr)
        .env("DIRIGO_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `top` meanwhile: the app's row shows outputs flowing, and each shard.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (view, _) = expect(
        &node,
        ADMIN,
        &["top", "--once", "--interval", "800ms"],
        "",
        0,
    );
    let row = view
        .lines()
        .find(|l| l.starts_with("s "))
        .unwrap_or_else(|| panic!("no row for s in {view}"));
    let rate: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(rate > 0.0, "{view}");
    assert!(
        view.contains("shard 0 busy") && view.contains("shard 1 busy"),
        "{view}"
    );
    let o = load.wait_with_output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    // About 1% of readings are alerts; every one sent was acknowledged.
    let outputs: u64 = out
        .split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find(|(_, w)| *w == "outputs")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no output count in {out:?}"));
    assert!(outputs > 20, "{out}");
    assert!(
        out.contains("0 shed") && out.contains("(0 untimed)"),
        "{out}"
    );
    assert!(err.contains("sent "), "a progress line: {err:?}");
    // The file: a header, then (value ms, percentile, count) rows,
    // non-decreasing, ending at 100% with every output counted.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().contains("Percentile"));
    let rows: Vec<(f64, f64, u64)> = lines
        .filter(|l| !l.trim().is_empty() && !l.starts_with("#["))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(rows
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].2 <= w[1].2));
    let last = rows.last().unwrap();
    assert_eq!((last.1, last.2), (1.0, outputs));
    assert!(last.0 > 0.0 && last.0 < 10_000.0, "{last:?}");
    assert!(
        text.contains(&format!("Total count    = {outputs:>12}")),
        "{text}"
    );
    // A load whose sink stays silent says so (exit 1); a replay without
    // its file is a usage error.
    let silent = [
        "load",
        "s",
        "readings",
        "--generator",
        "sensors",
        "--duration",
        "300ms",
        "--drain",
        "200ms",
        "--hgrm",
        hgrm_s,
    ];
    expect(&node, ADMIN, &silent, "", 1);
    let replay = [
        "load",
        "s",
        "readings",
        "--generator",
        "sensors",
        "--pattern",
        "replay",
    ];
    let (_, err) = expect(&node, ADMIN, &replay, "", 2);
    assert!(err.contains("--replay"), "{err}");
    // A barrier-closed app: every window's rows are timed, the last one's
    // too (empty batches follow the last barrier while its rows come).
    expect(
        &node,
        ADMIN,
        &["deploy", "aggregate", "t", "-p", "fn=count"],
        "",
        0,
    );
    let windows = [
        "load",
        "t",
        "events",
        "--generator",
        "rows",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--barrier-every",
        "100ms",
        "--drain",
        "1s",
        "--hgrm",
        hgrm_s,
    ];
    let (out, _) = expect(&node, ADMIN, &windows, "", 0);
    assert!(
        out.contains("(0 untimed)") && out.contains("0 shed"),
        "{out}"
    );
}
