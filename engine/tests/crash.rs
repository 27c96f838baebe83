//! The crash test: a durable app's node runs as a child process under load
//! and is killed with SIGKILL at seeded random points (during load, during
//! a checkpoint, during recovery itself), many rounds, each restarted from
//! the same data folder. Checked:
//!
//! - nothing acknowledged is lost: every restart's log holds at least every
//!   event whose send returned `Ok` before the kill;
//! - exactly once: after the last restart, the app's state (per-word counts
//!   and id sums of a `Keyed` operator, the total of a `Merged` one) equals
//!   a sequential oracle over exactly the events in the log, and no key saw
//!   its events out of order;
//! - the same for a second durable app on event time in the same node
//!   (`common/windowed.rs`): per-user tumbling windows on event-time
//!   timers, whose open windows and timers are checkpointed with its
//!   state; each window's count is in exactly one place (still open, or
//!   fired and summed downstream), equal to the oracle's, and a window is
//!   open exactly when the final watermark has not passed it.
//!
//! This binary has its own `main` (`harness = false`): run with `--child`
//! it is the node under test; otherwise it is the test, re-running itself.
//! `DIRIGO_CRASH_ROUNDS` sets the number of kills (default 20),
//! `DIRIGO_CRASH_SEED` the seed (default 7).

#[path = "common/counter.rs"]
mod counter;
#[path = "common/windowed.rs"]
mod windowed;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use counter::{oracle, query, Step};
use dirigo_engine::{Node, NodeConfig, Placement};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TEST_NAME: &str = "sigkill_rounds_lose_nothing_acknowledged_and_apply_it_once";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    // Respect a name filter as libtest would (flags are ignored).
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("running 0 tests (filtered out)");
        return;
    }
    println!("running 1 test");
    parent();
    println!("test {TEST_NAME} ... ok");
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lines a child printed, as they come.
fn spawn_child(
    dir: &std::path::Path,
    seed: u64,
    last: bool,
) -> (std::process::Child, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .arg("--child")
        .arg(dir)
        .arg(seed.to_string())
        .arg(if last { "last" } else { "load" })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The number after `prefix` in `line`.
fn field(line: &str, prefix: &str) -> Option<u64> {
    line.strip_prefix(prefix)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parent() {
    let rounds = env_u64("DIRIGO_CRASH_ROUNDS", 20);
    let seed = env_u64("DIRIGO_CRASH_SEED", 7);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked = 0u64;
    let (mut during_recovery, mut during_checkpoint, mut checkpoints) = (0, 0, 0);
    for round in 0..rounds {
        let (mut child, lines) = spawn_child(dir.path(), seed ^ round, false);
        // One kill in four lands before recovery is done (during restore,
        // replay, or node start); one in four the moment a checkpoint
        // starts (its barrier in flight, states on their way, the manifest
        // not yet replaced); the rest after a random stretch of load.
        let early = rng.gen_ratio(1, 4);
        let at_checkpoint = !early && rng.gen_ratio(1, 3);
        let delay = if early {
            Duration::from_millis(rng.gen_range(0..25))
        } else {
            Duration::from_millis(rng.gen_range(30..400))
        };
        let mut kill_at = if early {
            Some(Instant::now() + delay)
        } else {
            None
        };
        let mut recovered = false;
        let mut checkpointing = false;
        loop {
            let now = Instant::now();
            if kill_at.is_some_and(|t| now >= t) {
                break;
            }
            let wait = kill_at.map_or(Duration::from_secs(60), |t| t - now);
            match lines.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(next) = field(&line, "recovered ") {
                        assert!(
                            next >= acked,
                            "round {round}: the log holds {next} events, but {acked} were \
                             acknowledged before the kill"
                        );
                        recovered = true;
                        if kill_at.is_none() {
                            kill_at = Some(Instant::now() + delay);
                        }
                    } else if let Some(next) = field(&line, "wrecovered ") {
                        assert!(
                            next >= acked,
                            "round {round}: the windowed app's log holds {next} events, \
                             but {acked} were acknowledged before the kill"
                        );
                    } else if let Some(n) = field(&line, "acked ") {
                        acked = acked.max(n);
                    } else if line == "checkpointing" {
                        checkpointing = true;
                        if at_checkpoint {
                            break;
                        }
                    } else if line.starts_with("checkpoint ") {
                        checkpointing = false;
                        checkpoints += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        kill_at.is_some(),
                        "round {round}: the child said nothing for 60 s"
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "round {round}: the child exited by itself: {:?}",
                        child.wait()
                    )
                }
            }
        }
        // SIGKILL: no destructor, no flush, no goodbye.
        child.kill().expect("kill");
        let _ = child.wait();
        // Acks printed just before the kill still count.
        while let Ok(line) = lines.try_recv() {
            if let Some(n) = field(&line, "acked ") {
                acked = acked.max(n);
            }
        }
        during_recovery += usize::from(!recovered);
        during_checkpoint += usize::from(checkpointing);
    }
    // The seeded schedule covers every kind of kill it promises.
    if rounds >= 20 {
        assert!(
            during_recovery > 0,
            "no kill landed before recovery finished"
        );
        assert!(during_checkpoint > 0, "no kill landed during a checkpoint");
        assert!(checkpoints > 0, "no checkpoint was committed");
    }
    // The last run: recover, send a little more, and report the state.
    let (mut child, lines) = spawn_child(dir.path(), seed ^ rounds, true);
    let mut report = Vec::new();
    let mut windows = Vec::new();
    let mut total = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the last child reports in time");
        if let Some(next) = field(&line, "recovered ") {
            assert!(
                next >= acked,
                "the log holds {next} events, {acked} were acknowledged"
            );
        } else if let Some(n) = field(&line, "final ") {
            total = Some(n);
        } else if line.starts_with("win ") {
            windows.push(line);
        } else if line.starts_with("word ")
            || line.starts_with("total ")
            || line.starts_with("disorder ")
        {
            report.push(line);
        } else if line == "done" {
            break;
        }
    }
    let _ = child.wait();
    let total = total.expect("the child said how many events it holds");
    let want = oracle(&[Step::Events(0, total)]);
    let mut expect = Vec::new();
    for (w, (n, s)) in &want.words {
        expect.push(format!("word {w} {n} {s}"));
    }
    expect.push(format!("total {} {}", want.total_n, want.total_id_sum));
    expect.push("disorder 0".to_string());
    assert_eq!(
        report, expect,
        "state after {rounds} kills != sequential oracle over {total} events"
    );
    let want_windows: Vec<String> = windowed::oracle(total)
        .into_iter()
        .map(|((k, start), (n, fired))| format!("win {k} {start} {n} {fired}"))
        .collect();
    assert!(
        want_windows.iter().filter(|w| w.ends_with("true")).count() > 10,
        "windows fired"
    );
    assert_eq!(
        windows, want_windows,
        "windows after {rounds} kills != sequential oracle over {total} events"
    );
    eprintln!(
        "crash: {rounds} SIGKILLs ({during_recovery} before recovery finished, \
         {during_checkpoint} during a checkpoint), {checkpoints} checkpoints seen, {acked} events acknowledged before the last kill, {total} in the final \
         state, equal to the oracle"
    );
}

/// The node under test: recover, then send events in random batches (and
/// take checkpoints) until killed; with `last`, send a few more and report.
fn child(args: &[String]) {
    let dir = std::path::PathBuf::from(&args[0]);
    let seed: u64 = args[1].parse().expect("seed");
    let last = args[2] == "last";
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(dir),
        log_segment_bytes: 256 << 10,
        ..NodeConfig::default()
    })
    .expect("node starts");
    let (app, rx) = counter::app("crash");
    let h = node.deploy(app).expect("deploys (recovers)");
    let rec = h.recovery().expect("durable").clone();
    let (wapp, wrx) = windowed::app("crash-windows");
    let wh = node.deploy(wapp).expect("deploys (recovers)");
    // No barriers are logged before the last run, so log entries = events.
    let mut next = rec.log_next_seq;
    // Its batches follow the counter's (so it holds no more than it).
    let mut wnext = wh.recovery().expect("durable").log_next_seq;
    assert!(wnext <= next, "the windowed app's log is not ahead");
    let mut out = std::io::stdout();
    let say = |out: &mut std::io::Stdout, s: String| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say(
        &mut out,
        format!(
            "recovered {next} checkpoint {:?} replayed {}",
            rec.checkpoint, rec.replayed_events
        ),
    );
    say(&mut out, format!("wrecovered {wnext}"));
    let src = h.source::<counter::Ev>("events").expect("source");
    let wsrc = wh.source::<windowed::TEv>("events").expect("source");
    let stop_at = if last { next + 5_000 } else { u64::MAX };
    // Some runs checkpoint often, some rarely (long replays to kill).
    let every = [5u64, 25, 200, 2_000][rng.gen_range(0..4)];
    let mut batches = 0u64;
    while next < stop_at {
        let n = rng.gen_range(1..400).min(stop_at - next);
        let batch = (next..next + n).map(counter::event).collect();
        src.send_batch(batch, Duration::from_secs(30))
            .map_err(|r| r.error)
            .expect("acknowledged");
        next += n;
        // The windowed app catches up to the same events.
        let batch = (wnext..next).map(windowed::event).collect();
        wsrc.send_batch(batch, Duration::from_secs(30))
            .map_err(|r| r.error)
            .expect("acknowledged");
        wnext = next;
        say(&mut out, format!("acked {next}"));
        batches += 1;
        if batches % every == 0 {
            say(&mut out, "checkpointing".to_string());
            let id = h.checkpoint().expect("checkpoint");
            wh.checkpoint().expect("checkpoint");
            say(&mut out, format!("checkpoint {id}"));
        }
    }
    let st = query(&h, &rx);
    say(&mut out, format!("final {next}"));
    for (w, (n, s)) in &st.words {
        say(&mut out, format!("word {w} {n} {s}"));
    }
    say(
        &mut out,
        format!("total {} {}", st.total_n, st.total_id_sum),
    );
    say(&mut out, format!("disorder {}", st.disorder));
    for ((k, start), (n, fired)) in windowed::query(&wh, &wrx) {
        say(&mut out, format!("win {k} {start} {n} {fired}"));
    }
    say(&mut out, "done".to_string());
    node.shutdown();
}
