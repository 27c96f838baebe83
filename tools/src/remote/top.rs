//! `dirigo top`: a live view of a node, from its stats polled once a
//! `--interval` over one connection. Per app: outputs per second and SLO
//! satisfaction over the last interval (from the counters' deltas), p50
//! and p99 latency and the p99 queueing delay (the node's histograms,
//! since deploy), lessees now. Per shard: the busy share of the last
//! interval. On a terminal it is a full-screen view (ratatui) that `q`,
//! Esc or Ctrl-C leaves; otherwise (a pipe, or `--once`) it prints the
//! same figures as text, once.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize};
use ratatui::widgets::{Block, Gauge, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

use super::{parse_duration, CliError, Remote};
use dirigo_net::Client;

/// `dirigo top`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    remote: Remote,
    /// How often to refresh.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Print one interval's figures as text and exit (also the behaviour
    /// when stdout is not a terminal).
    #[arg(long)]
    once: bool,
}

/// A stats reading and when it was taken.
struct Snapshot {
    at: Instant,
    stats: Value,
}

/// One app's row.
#[derive(Debug, PartialEq)]
pub(crate) struct AppRow {
    pub(crate) name: String,
    pub(crate) class: String,
    /// Outputs per second over the interval.
    pub(crate) rate: f64,
    /// Share of the interval's outputs within the SLO (`None`: none came).
    pub(crate) satisfaction: Option<f64>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) queue_p99_ms: f64,
    pub(crate) lessees: u64,
}

/// One shard's row.
#[derive(Debug, PartialEq)]
pub(crate) struct ShardRow {
    pub(crate) shard: u64,
    /// Busy share of the interval, 0..=1.
    pub(crate) busy: f64,
    pub(crate) died: Option<String>,
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The rows of the interval from `prev` to `cur` (an app or shard new in
/// `cur` counts from zero).
pub(crate) fn rows(prev: &Value, cur: &Value, dt: Duration) -> (Vec<AppRow>, Vec<ShardRow>) {
    let secs = dt.as_secs_f64().max(1e-9);
    let empty = Vec::new();
    let before = |list: &str, field: &str, key: &Value| -> Option<Value> {
        prev[list]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .find(|x| &x[field] == key)
            .cloned()
    };
    let apps = cur["apps"].as_array().unwrap_or(&empty).iter().map(|a| {
        let was = before("apps", "name", &a["name"]).unwrap_or(Value::Null);
        let delivered = num(&a["delivered"]) - num(&was["delivered"]);
        let within = num(&a["within_slo"]) - num(&was["within_slo"]);
        AppRow {
            name: a["name"].as_str().unwrap_or("?").to_owned(),
            class: a["class"].as_str().unwrap_or("?").to_owned(),
            rate: delivered.max(0.0) / secs,
            satisfaction: (delivered > 0.0).then(|| within / delivered),
            p50_ms: num(&a["latency_us"]["p50"]) / 1e3,
            p99_ms: num(&a["latency_us"]["p99"]) / 1e3,
            queue_p99_ms: num(&a["queueing_us"]["p99"]) / 1e3,
            lessees: a["lessees"].as_u64().unwrap_or(0),
        }
    });
    let shards = cur["shards"].as_array().unwrap_or(&empty).iter().map(|s| {
        let was = before("shards", "shard", &s["shard"]).unwrap_or(Value::Null);
        let busy = (num(&s["busy_ns"]) - num(&was["busy_ns"])) / 1e9 / secs;
        ShardRow {
            shard: s["shard"].as_u64().unwrap_or(0),
            busy: busy.clamp(0.0, 1.0),
            died: s["died"].as_str().map(str::to_owned),
        }
    });
    (apps.collect(), shards.collect())
}

/// The time between two readings on the node's clock (its stats' `now_ns`,
/// so the request's trip does not count), or on ours.
fn interval(prev: &Snapshot, cur: &Snapshot) -> Duration {
    match (prev.stats["now_ns"].as_u64(), cur.stats["now_ns"].as_u64()) {
        (Some(a), Some(b)) if b > a => Duration::from_nanos(b - a),
        _ => cur.at - prev.at,
    }
}

fn read(c: &mut Client) -> Result<Snapshot, CliError> {
    let stats = c.stats(None).map_err(|e| CliError::node("top: stats", e))?;
    Ok(Snapshot {
        at: Instant::now(),
        stats,
    })
}

pub(crate) fn top(a: TopArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    if a.once || !std::io::stdout().is_terminal() {
        let first = read(&mut c)?;
        std::thread::sleep(a.interval);
        let second = read(&mut c)?;
        let (apps, shards) = rows(&first.stats, &second.stats, interval(&first, &second));
        print!("{}", text(&apps, &shards));
        return Ok(());
    }
    let mut terminal = ratatui::try_init()
        .map_err(|e| CliError::Failed(format!("top: cannot take the terminal: {e}")))?;
    let shown = live(&mut c, &mut terminal, &a);
    ratatui::restore();
    shown
}

/// The full-screen loop, until a quit key.
fn live(
    c: &mut Client,
    terminal: &mut ratatui::DefaultTerminal,
    a: &TopArgs,
) -> Result<(), CliError> {
    let mut prev = read(c)?;
    let mut view = (Vec::new(), Vec::new());
    loop {
        let addr = &a.remote.addr;
        terminal
            .draw(|f| draw(f, addr, &view.0, &view.1))
            .map_err(|e| CliError::Failed(format!("top: drawing: {e}")))?;
        let wake = prev.at + a.interval;
        while let Some(left) = wake.checked_duration_since(Instant::now()) {
            let ready = event::poll(left).map_err(|e| CliError::Failed(format!("top: {e}")))?;
            if ready && quit(event::read().map_err(|e| CliError::Failed(format!("top: {e}")))?) {
                return Ok(());
            }
        }
        let cur = read(c)?;
        view = rows(&prev.stats, &cur.stats, interval(&prev, &cur));
        prev = cur;
    }
}

fn quit(e: Event) -> bool {
    let Event::Key(k) = e else { return false };
    matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
        || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL))
}

fn pct(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

/// The figures as text (`--once`, or not a terminal).
pub(crate) fn text(apps: &[AppRow], shards: &[ShardRow]) -> String {
    let mut t = format!(
        "{:<16} {:<16} {:>10} {:>8} {:>9} {:>9} {:>9} {:>7}\n",
        "app", "class", "outputs/s", "in-SLO", "p50ms", "p99ms", "q-p99ms", "lessees"
    );
    for a in apps {
        t += &format!(
            "{:<16} {:<16} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>7}\n",
            a.name,
            a.class,
            a.rate,
            pct(a.satisfaction),
            a.p50_ms,
            a.p99_ms,
            a.queue_p99_ms,
            a.lessees
        );
    }
    for s in shards {
        let state = s
            .died
            .as_ref()
            .map_or(String::new(), |d| format!(" (died: {d})"));
        t += &format!("shard {} busy {:.1}%{state}\n", s.shard, s.busy * 100.0);
    }
    t
}

/// The full-screen view.
fn draw(f: &mut Frame, addr: &str, apps: &[AppRow], shards: &[ShardRow]) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(shards.len() as u16 + 2),
    ])
    .areas(f.area());
    let title = format!(" dirigo top — {addr} — {} apps — q to quit", apps.len());
    f.render_widget(Paragraph::new(title).bold(), head);
    let header = Row::new([
        "app",
        "class",
        "outputs/s",
        "in-SLO",
        "p50 ms",
        "p99 ms",
        "q-p99 ms",
        "lessees",
    ])
    .style(Style::new().bold().fg(Color::Cyan));
    let lines = apps.iter().map(|a| {
        let low = a.satisfaction.is_some_and(|s| s < 0.99);
        let style = if low {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        Row::new([
            a.name.clone(),
            a.class.clone(),
            format!("{:.0}", a.rate),
            pct(a.satisfaction),
            format!("{:.2}", a.p50_ms),
            format!("{:.2}", a.p99_ms),
            format!("{:.2}", a.queue_p99_ms),
            a.lessees.to_string(),
        ])
        .style(style)
    });
    let widths = [16, 16, 10, 8, 9, 9, 9, 7].map(Constraint::Length);
    let table = Table::new(lines, widths).header(header).block(
        Block::bordered()
            .title(" apps (in-SLO and outputs/s: last interval; latency: since deploy) "),
    );
    f.render_widget(table, body);
    let block = Block::bordered().title(" shards: busy share of the last interval ");
    let inner = block.inner(foot);
    f.render_widget(block, foot);
    let bars = Layout::vertical(shards.iter().map(|_| Constraint::Length(1))).split(inner);
    for (s, area) in shards.iter().zip(bars.iter()) {
        let label = match &s.died {
            Some(d) => format!("shard {}: died: {d}", s.shard),
            None => format!("shard {}: {:.1}%", s.shard, s.busy * 100.0),
        };
        let color = if s.died.is_some() {
            Color::Red
        } else {
            Color::Green
        };
        let g = Gauge::default()
            .ratio(s.busy)
            .label(label)
            .gauge_style(Style::new().fg(color));
        f.render_widget(g, *area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_and_shares_come_from_the_intervals_deltas() {
        let app = |delivered: u64, within: u64| {
            json!({"name": "a", "class": "latency-critical", "delivered": delivered,
                   "within_slo": within, "latency_us": {"p50": 1500.0, "p99": 4000.0},
                   "queueing_us": {"p99": 200.0}, "lessees": 2})
        };
        let shard = |busy_ns: u64| json!({"shard": 0, "busy_ns": busy_ns, "died": null});
        let prev = json!({"apps": [app(1000, 1000)], "shards": [shard(1_000_000_000)]});
        let cur = json!({"apps": [app(3000, 2500), {"name": "new", "delivered": 10, "within_slo": 10}],
                         "shards": [shard(1_250_000_000)]});
        let (apps, shards) = rows(&prev, &cur, Duration::from_millis(500));
        assert_eq!(apps[0].rate, 4000.0);
        assert_eq!(apps[0].satisfaction, Some(0.75));
        assert_eq!((apps[0].p99_ms, apps[0].lessees), (4.0, 2));
        assert_eq!((apps[1].rate, apps[1].satisfaction), (20.0, Some(1.0)));
        assert_eq!(shards[0].busy, 0.5);
        let t = text(&apps, &shards);
        assert!(
            t.contains("75.0%") && t.contains("shard 0 busy 50.0%"),
            "{t}"
        );
        let (idle, _) = rows(&cur, &cur, Duration::from_secs(1));
        assert_eq!((idle[0].rate, idle[0].satisfaction), (0.0, None));
    }

    #[test]
    fn the_full_screen_view_shows_every_app_and_shard() {
        let apps = vec![AppRow {
            name: "words".into(),
            class: "latency-critical".into(),
            rate: 1234.0,
            satisfaction: Some(0.5),
            p50_ms: 1.25,
            p99_ms: 9.5,
            queue_p99_ms: 0.5,
            lessees: 3,
        }];
        let shards = vec![
            ShardRow {
                shard: 0,
                busy: 0.25,
                died: None,
            },
            ShardRow {
                shard: 1,
                busy: 0.0,
                died: Some("panic".into()),
            },
        ];
        let backend = ratatui::backend::TestBackend::new(100, 12);
        let mut t = ratatui::Terminal::new(backend).unwrap();
        t.draw(|f| draw(f, "127.0.0.1:7070", &apps, &shards))
            .unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "127.0.0.1:7070",
            "words",
            "1234",
            "50.0%",
            "9.50",
            "shard 0: 25.0%",
            "shard 1: died: panic",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen");
        }
    }
}
