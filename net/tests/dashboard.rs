//! The live dashboard in a real browser: a node with an admin token runs
//! two apps (`sensors`, latency critical with a 1 ms SLO, under steady
//! load with its windows closed by barriers, and `sums`, a best-effort
//! aggregate), and headless Chromium opens `/?token=...`, lets the page
//! poll `/v1/stats` for 6 s of virtual time, and dumps its DOM.
//!
//! - While the load runs: each app's and each shard's row is there with
//!   more than one sample, the page saw outputs flow (peak throughput
//!   above zero) and its `delivered` lies between the node's before and
//!   after; a screenshot goes to `target/dashboard.png`.
//! - Once the load stopped and the figures hold still: every row's
//!   rendered `delivered`, `p99_ms`, `satisfaction`, `lessees` and SLO equal
//!   `/v1/apps/{app}/stats` read before and after the browser (within the
//!   rendering's rounding), and throughput is 0.
//! - Without the token the page shows `unauthorized` and draws nothing.
//!
//! Without Chromium the test fails under CI (env `CI`) and is skipped with
//! a message otherwise.

#[path = "common/mod.rs"]
mod common;
#[path = "common/http.rs"]
mod http;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dirigo_net::apps::{Reading, Row};
use dirigo_net::{Client, DeployOptions, Lag, ServerConfig};
use serde_json::{json, Value};

const TOKEN: &str = "dash-admin-token";

#[test]
fn the_dashboard_draws_what_the_node_reports() {
    let cfg = ServerConfig {
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let server = common::serve(2, cfg);
    let addr = server.http_addr().expect("an HTTP front");
    the_routes_serve_the_page_and_guard_the_data(addr);
    let Some(browser) = chromium() else {
        return;
    };
    deploy(server.local_addr(), addr);
    let stop = Arc::new(AtomicBool::new(false));
    let drain = drain(server.local_addr(), stop.clone());
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = load(server.local_addr(), load_stop.clone());
    wait_for(|| app_stats(addr, "sensors")["delivered"].as_u64() > Some(1000));

    while_the_load_runs(&browser, addr);
    load_stop.store(true, Ordering::Release);
    load.join().expect("the load thread");
    wait_still(addr);
    once_it_holds_still(&browser, addr);
    without_the_token(&browser, addr);

    stop.store(true, Ordering::Release);
    drain.join().expect("the drain thread");
    server.shutdown();
}

/// `/`, `/dashboard.js`, `/dashboard.css` are public and typed;
/// `/v1/stats` asks the admin token and carries the node clock.
fn the_routes_serve_the_page_and_guard_the_data(addr: SocketAddr) {
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let r = http::request(addr, "GET", path, "", b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
    }
    let r = http::request(addr, "POST", "/", "", b"");
    assert_eq!(r.status, 405, "{}", r.text());
    let r = http::request(addr, "GET", "/v1/stats", "", b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    let r = http::request(addr, "GET", "/v1/stats", TOKEN, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(v["now_ns"].as_u64() > Some(0), "{v}");
}

/// `sensors` (1 ms SLO) and `sums` (best effort), over the binary
/// protocol; `/v1/stats` then carries their SLOs.
fn deploy(bin: SocketAddr, addr: SocketAddr) {
    let mut c = Client::connect(bin, TOKEN).expect("connects");
    let slo = DeployOptions {
        slo: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    c.deploy("sensors", "sensors", &json!({}), &slo)
        .expect("deploys sensors");
    let best_effort = DeployOptions::default();
    c.deploy("aggregate", "sums", &json!({"fn": "sum"}), &best_effort)
        .expect("deploys sums");
    let v = http::request(addr, "GET", "/v1/stats", TOKEN, b"").json();
    let slo_of = |name: &str| {
        let apps = v["apps"].as_array().expect("apps");
        let a = apps.iter().find(|a| a["name"] == name).expect("the app");
        a["slo_us"].clone()
    };
    assert_eq!(slo_of("sensors"), json!(1000));
    assert_eq!(slo_of("sums"), Value::Null);
}

/// Read every sink until `stop`, so the apps never wait for a reader.
fn drain(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let mut c = Client::connect(addr, TOKEN).expect("connects");
    for (app, sink) in [
        ("sensors", "out"),
        ("sensors", "alert-sink"),
        ("sums", "out"),
    ] {
        c.subscribe(app, sink, Lag::DropOldest).expect("subscribes");
    }
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            if let Err(e) = c.next_output(Duration::from_millis(50)) {
                panic!("the subscription failed: {e}");
            }
        }
    })
}

/// Steady load until `stop`: readings above the alert threshold (every
/// one is an output), a window closed every 10 batches; `sums` gets a
/// window of 7 keys every 20 batches.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let mut c = Client::connect(addr, TOKEN).expect("connects");
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Acquire) {
            let readings: Vec<Reading> = (0..100)
                .map(|k| Reading {
                    sensor: (k % 8) as u32,
                    value: 1.5,
                })
                .collect();
            c.ingest("sensors", "readings", &readings).expect("ingests");
            i += 1;
            if i % 10 == 0 {
                c.barrier("sensors", i / 10).expect("a barrier");
            }
            if i % 20 == 0 {
                let rows: Vec<Row> = (0..7)
                    .map(|k| Row {
                        key: format!("k{k}"),
                        value: (k * i) as f64,
                    })
                    .collect();
                c.ingest("sums", "events", &rows).expect("ingests");
                c.barrier("sums", i / 20).expect("a barrier");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn app_stats(addr: SocketAddr, app: &str) -> Value {
    let r = http::request(addr, "GET", &format!("/v1/apps/{app}/stats"), TOKEN, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn wait_for(mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < until, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The figures a still node keeps: they must not move for a second.
fn still_figures(addr: SocketAddr) -> Vec<Value> {
    ["sensors", "sums"]
        .iter()
        .map(|app| {
            let s = app_stats(addr, app);
            json!([
                s["delivered"],
                s["lessees"],
                s["latency_us"]["p99"],
                s["satisfaction"]
            ])
        })
        .collect()
}

fn wait_still(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (still_figures(addr), Instant::now());
    while since.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < until, "the figures never held still");
        std::thread::sleep(Duration::from_millis(100));
        let now = still_figures(addr);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

// ---------------------------------------------------------------------
// the browser
// ---------------------------------------------------------------------

/// Chromium's command, or `None` (skip) when it is not installed and
/// this is not CI.
fn chromium() -> Option<String> {
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let found = names.iter().find(|n| {
        Command::new(n)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    match found {
        Some(n) => Some((*n).to_owned()),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI needs Chromium for the dashboard test (apt-get install chromium)")
        }
        None => {
            // Straight to stderr, past the test harness's capture, so the skip
            // shows in a plain `cargo test`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the dashboard browser test: no chromium on PATH (apt-get install chromium)"
            );
            None
        }
    }
}

/// Run headless Chromium on `url` with `args`; its stdout. Killed after
/// 90 s.
fn run_browser(browser: &str, url: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts chromium");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waits") {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("chromium ran over 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().expect("reads stdout");
    let stderr = err_reader.join().expect("reads stderr");
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    stdout
}

fn dump(browser: &str, url: &str) -> Dom {
    let html = run_browser(browser, url, &["--dump-dom".to_owned()]);
    assert!(html.contains("<body"), "no DOM: {html}");
    Dom(html)
}

/// Where the screenshot goes: the target folder of this test binary
/// (`target/debug/deps/dashboard-*` → `target/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

// ---------------------------------------------------------------------
// the dumped DOM
// ---------------------------------------------------------------------

/// Chromium's serialized DOM, read by the attributes the page leaves.
struct Dom(String);

/// One row of the page: its opening tag and what follows up to the next
/// row of its kind.
struct Part<'a> {
    tag: &'a str,
    body: &'a str,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

impl Dom {
    fn body_attr(&self, name: &str) -> Option<&str> {
        let at = self.0.find("<body")?;
        let end = at + self.0[at..].find('>')?;
        attr(&self.0[at..end], name)
    }

    /// The element with `key="value"` and what follows it, up to the next
    /// element with `key`.
    fn part(&self, key: &str, value: &str) -> Option<Part<'_>> {
        let needle = format!(" {key}=\"{value}\"");
        let at = self.0.find(&needle)?;
        let start = self.0[..at].rfind('<')?;
        let tag_end = at + self.0[at..].find('>')?;
        let rest = &self.0[tag_end..];
        let end = rest.find(&format!(" {key}=\"")).unwrap_or(rest.len());
        Some(Part {
            tag: &self.0[start..tag_end],
            body: &rest[..end],
        })
    }
}

impl Part<'_> {
    fn attr(&self, name: &str) -> &str {
        attr(self.tag, name).unwrap_or_else(|| panic!("no {name} on {}", self.tag))
    }

    fn samples(&self) -> u64 {
        self.attr("data-samples").parse().expect("a sample count")
    }

    /// The text of `data-metric="name"`.
    fn text(&self, name: &str) -> &str {
        let needle = format!("data-metric=\"{name}\"");
        let at = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body));
        let open = at + self.body[at..].find('>').expect("the tag ends");
        let len = self.body[open..].find('<').expect("the text ends");
        &self.body[open + 1..open + len]
    }

    /// The number shown as `name`, and half its last digit's unit (the
    /// rounding the page did).
    fn number(&self, name: &str) -> (f64, f64) {
        let t = self.text(name).replace(',', "");
        let v: f64 = t.parse().unwrap_or_else(|_| panic!("{name} shows {t:?}"));
        let decimals = t.split_once('.').map_or(0, |(_, d)| d.len());
        (v, 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9)
    }
}

fn close(part: &Part<'_>, name: &str, want: f64) {
    let (got, tolerance) = part.number(name);
    assert!(
        (got - want).abs() <= tolerance,
        "{name}: the page shows {got}, the node says {want}"
    );
}

// ---------------------------------------------------------------------
// the three looks
// ---------------------------------------------------------------------

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/?token={TOKEN}")
}

fn while_the_load_runs(browser: &str, addr: SocketAddr) {
    let before = app_stats(addr, "sensors")["delivered"]
        .as_u64()
        .expect("delivered");
    let dom = dump(browser, &url(addr));
    let after = app_stats(addr, "sensors")["delivered"]
        .as_u64()
        .expect("delivered");
    let updates: u64 = dom
        .body_attr("data-updates")
        .expect("updates")
        .parse()
        .expect("a count");
    assert!(updates >= 3, "the page refreshed {updates} times");
    let row = dom.part("data-app", "sensors").expect("a row for sensors");
    assert!(
        row.samples() >= 3 && row.samples() <= updates,
        "{}",
        row.tag
    );
    let (delivered, _) = row.number("delivered");
    assert!(
        (before as f64..=after as f64).contains(&delivered),
        "delivered {delivered} is not in [{before}, {after}]"
    );
    let (peak, _) = row.number("throughput_peak");
    assert!(peak > 0.0, "the page saw no output flow (peak {peak})");
    assert_eq!(row.text("slo_ms"), "1");
    assert_eq!(row.attr("data-class"), "latency-critical");
    let sums = dom.part("data-app", "sums").expect("a row for sums");
    assert_eq!(sums.text("slo_ms"), "none");
    assert_eq!(sums.attr("data-class"), "best-effort");
    for shard in ["0", "1"] {
        let s = dom.part("data-shard", shard).expect("a row per shard");
        assert!(s.samples() >= 3, "{}", s.tag);
        let (busy, _) = s.number("busy");
        assert!((0.0..=100.0).contains(&busy), "shard {shard} busy {busy}");
    }
    let png = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    run_browser(
        browser,
        &url(addr),
        &[shot, "--window-size=1280,900".into()],
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot at {}", png.display());
    let _ = writeln!(std::io::stderr(), "dashboard screenshot: {}", png.display());
}

/// A still node: every figure drawn equals the node's. Tried up to three
/// times if the node's figures moved while the browser ran.
fn once_it_holds_still(browser: &str, addr: SocketAddr) {
    for _ in 0..3 {
        let before = still_figures(addr);
        let dom = dump(browser, &url(addr));
        if still_figures(addr) != before {
            wait_still(addr);
            continue;
        }
        let updates: u64 = dom
            .body_attr("data-updates")
            .expect("updates")
            .parse()
            .expect("a count");
        assert!(updates >= 3, "the page refreshed {updates} times");
        assert!(dom.body_attr("data-error").is_none());
        for app in ["sensors", "sums"] {
            the_row_equals_the_stats(&dom, app, &app_stats(addr, app), updates);
        }
        return;
    }
    panic!("the node's figures kept moving");
}

fn the_row_equals_the_stats(dom: &Dom, app: &str, s: &Value, updates: u64) {
    let row = dom.part("data-app", app).expect("a row for the app");
    assert!(
        row.samples() >= 3 && row.samples() <= updates,
        "{}",
        row.tag
    );
    let delivered = s["delivered"].as_u64().expect("delivered");
    assert!(delivered > 0, "{app} delivered nothing");
    assert_eq!(row.number("delivered").0, delivered as f64, "{app}");
    assert_eq!(row.number("throughput").0, 0.0, "{app}: the load stopped");
    let p99 = s["latency_us"]["p99"].as_f64().expect("p99");
    assert!(p99 > 0.0, "{app}: {s}");
    close(&row, "p99_ms", p99 / 1e3);
    close(
        &row,
        "satisfaction",
        s["satisfaction"].as_f64().expect("satisfaction") * 100.0,
    );
    let lessees = s["lessees"].as_u64().expect("lessees");
    assert_eq!(row.text("lessees"), lessees.to_string(), "{app}");
}

fn without_the_token(browser: &str, addr: SocketAddr) {
    let dom = dump(browser, &format!("http://{addr}/"));
    assert_eq!(dom.body_attr("data-error"), Some("unauthorized"));
    assert_eq!(dom.body_attr("data-updates"), Some("0"));
    assert!(dom.part("data-app", "sensors").is_none());
}
