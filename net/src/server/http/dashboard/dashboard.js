// The node's live dashboard: polls /v1/stats once a second and draws the
// last few minutes per app and per shard, as inline SVG.
//
// Rates come from two snapshots' deltas over the node clock (`now_ns`),
// so they do not depend on when the browser's fetch returned; the charts'
// time axis is the page's own clock, when it took each sample. Every
// figure drawn is also left in the DOM as text (`data-metric`), with the
// sample count of each row (`data-samples`) and the refreshes on
// `body[data-updates]`, for people and tests alike. App names go in as
// text only.
(function () {
  'use strict';

  const POLL_MS = 1000;
  const HISTORY_MS = 5 * 60 * 1000;
  const MIN_SPAN_MS = 5000;
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 300;
  const H = 64;

  const token = new URLSearchParams(window.location.search).get('token') || '';
  const apps = new Map();
  const shards = new Map();
  let updates = 0;

  // ---- formatting -------------------------------------------------------

  function fmtInt(n) {
    return Math.round(n).toLocaleString('en-US');
  }

  function fmtRate(r) {
    if (r === null) return '–';
    return r >= 100 ? fmtInt(r) : r.toFixed(1);
  }

  // Milliseconds to three or four significant digits.
  function fmtMs(us) {
    const ms = us / 1000;
    if (ms < 1) return ms.toFixed(3);
    return ms < 100 ? ms.toFixed(2) : ms.toFixed(1);
  }

  function fmtShort(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    if (v >= 100) return String(Math.round(v));
    return String(Math.round(v * 100) / 100);
  }

  function fmtSpan(ms) {
    const s = Math.round(ms / 1000);
    if (s < 120) return s + ' s';
    return Math.round(s / 60) + ' min';
  }

  function fmtUptime(ns) {
    const s = Math.floor(ns / 1e9);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h > 0) return 'up ' + h + ' h ' + String(m).padStart(2, '0') + ' min';
    if (m > 0) return 'up ' + m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    return 'up ' + s + ' s';
  }

  // ---- DOM helpers ------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function metric(parent, name, cls) {
    const e = el('span', cls || 'v', '–');
    e.dataset.metric = name;
    parent.appendChild(e);
    return e;
  }

  // A cell: a big figure with its unit, a chart under it, a caption.
  function cell(name, unit, kind) {
    const c = el('div', 'cell ' + kind);
    const top = el('div', 'figure');
    const value = metric(top, name);
    top.appendChild(el('span', 'unit', unit));
    const scale = el('span', 'scale');
    top.appendChild(scale);
    c.appendChild(top);
    const svg = svgEl('svg', {viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none'});
    svg.classList.add('chart');
    c.appendChild(svg);
    const caption = el('div', 'caption');
    c.appendChild(caption);
    return {root: c, value: value, svg: svg, scale: scale, caption: caption};
  }

  // ---- charts -----------------------------------------------------------

  // Points {t, v} (v null: a gap) as an SVG path over [t0, t1] x [0, ymax].
  function pathOf(points, t0, t1, ymax, step) {
    const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * W;
    const y = (v) => H - 2 - (Math.min(v, ymax) / ymax) * (H - 6);
    let d = '';
    let prevY = null;
    for (const p of points) {
      if (p.v === null) {
        prevY = null;
        continue;
      }
      const px = x(p.t).toFixed(1);
      const py = y(p.v).toFixed(1);
      if (prevY === null) d += 'M' + px + ' ' + py;
      else if (step) d += 'H' + px + 'V' + py;
      else d += 'L' + px + ' ' + py;
      prevY = py;
    }
    return d;
  }

  // Draw `points` in `svg`; `line` is an optional horizontal reference
  // (the SLO), always inside the scale. Returns the points' greatest value.
  function draw(svg, points, span, opts) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    let top = 0;
    for (const p of points) if (p.v !== null && p.v > top) top = p.v;
    let ymax = Math.max(top, opts.line ? opts.line * 1.25 : 0);
    ymax = opts.ymax || (ymax > 0 ? ymax * 1.1 : 1);
    const d = pathOf(points, span[0], span[1], ymax, opts.step);
    svg.appendChild(svgEl('line', {x1: 0, x2: W, y1: H - 2, y2: H - 2, class: 'axis'}));
    if (d) {
      const first = points.find((p) => p.v !== null);
      const x0 = ((first.t - span[0]) / Math.max(1, span[1] - span[0])) * W;
      svg.appendChild(svgEl('path', {d: d + 'V' + (H - 2) + 'H' + x0.toFixed(1) + 'Z', class: 'area'}));
      svg.appendChild(svgEl('path', {d: d, class: 'line'}));
    }
    if (opts.line) {
      const ly = (H - 2 - (opts.line / ymax) * (H - 6)).toFixed(1);
      svg.appendChild(svgEl('line', {x1: 0, x2: W, y1: ly, y2: ly, class: 'slo'}));
    }
    return top;
  }

  // ---- apps -------------------------------------------------------------

  function appRow(name) {
    const root = el('div', 'app');
    root.dataset.app = name;
    const id = el('div', 'id');
    id.appendChild(el('div', 'name', name));
    const badge = el('span', 'badge');
    id.appendChild(badge);
    const sub = el('div', 'sub');
    sub.appendChild(document.createTextNode('SLO '));
    const slo = metric(sub, 'slo_ms', 'slo-ms');
    const sloUnit = el('span', '', '');
    sub.appendChild(sloUnit);
    sub.appendChild(document.createTextNode(' · delivered '));
    const delivered = metric(sub, 'delivered', 'count');
    id.appendChild(sub);
    const failed = el('div', 'failed');
    failed.hidden = true;
    id.appendChild(failed);
    root.appendChild(id);
    const row = {root: root, badge: badge, slo: slo, sloUnit: sloUnit, delivered: delivered, failed: failed};
    row.throughput = cell('throughput', '/s', 'tp');
    row.p99 = cell('p99_ms', 'ms', 'lat');
    row.satisfaction = cell('satisfaction', '%', 'sat');
    row.lessees = cell('lessees', '', 'les');
    for (const c of [row.throughput, row.p99, row.satisfaction, row.lessees]) root.appendChild(c.root);
    row.throughput.caption.appendChild(document.createTextNode('peak '));
    row.peak = metric(row.throughput.caption, 'throughput_peak', 'peak');
    row.throughput.caption.appendChild(document.createTextNode('/s'));
    return {row: row, history: [], prev: null};
  }

  // One app's sample from its stats `a`, taken at node time `t` and page
  // time `at` (ms).
  function sampleApp(state, a, t, at) {
    const prev = state.prev;
    if (prev && (a.delivered < prev.delivered || t <= prev.t)) {
      state.history = []; // redeployed under the same name, or a new node
    }
    const keep = prev && state.history.length > 0;
    const rate = keep ? ((a.delivered - prev.delivered) * 1000) / (t - prev.t) : null;
    state.prev = {t: t, delivered: a.delivered};
    state.history.push({
      t: at,
      throughput: rate,
      p99_us: a.latency_us.p99,
      satisfaction: a.satisfaction * 100,
      lessees: a.lessees,
    });
    while (state.history.length > 1 && at - state.history[0].t > HISTORY_MS) state.history.shift();
  }

  function series(history, key) {
    return history.map((s) => ({t: s.t, v: s[key]}));
  }

  function renderApp(state, a, span) {
    const r = state.row;
    const h = state.history;
    const last = h[h.length - 1];
    const lc = a.class === 'latency-critical';
    r.root.dataset.samples = String(h.length);
    r.root.dataset.class = a.class;
    r.badge.textContent = a.class;
    r.badge.className = 'badge ' + (lc ? 'lc' : 'be');
    const slo = typeof a.slo_us === 'number' ? a.slo_us / 1000 : null;
    r.slo.textContent = slo === null ? 'none' : String(slo);
    r.sloUnit.textContent = slo === null ? '' : ' ms';
    r.delivered.textContent = fmtInt(a.delivered);
    r.failed.hidden = !a.failed;
    r.failed.textContent = a.failed ? 'failed: ' + a.failed : '';

    const rates = h.map((s) => s.throughput).filter((v) => v !== null);
    r.throughput.value.textContent = fmtRate(last.throughput);
    r.peak.textContent = fmtRate(rates.length ? Math.max.apply(null, rates) : null);
    r.throughput.scale.textContent = 'max ' + fmtShort(draw(r.throughput.svg, series(h, 'throughput'), span, {}));

    const p99 = h.map((s) => ({t: s.t, v: s.p99_us / 1000}));
    r.p99.value.textContent = fmtMs(last.p99_us);
    r.p99.value.classList.toggle('bad', slo !== null && last.p99_us / 1000 > slo);
    r.p99.scale.textContent = 'max ' + fmtShort(draw(r.p99.svg, p99, span, {line: slo})) + ' ms';
    r.p99.caption.textContent = slo === null ? 'no SLO (best effort)' : 'dashed: the SLO, ' + slo + ' ms';

    r.satisfaction.value.textContent = last.satisfaction.toFixed(2);
    r.satisfaction.value.classList.toggle('bad', lc && last.satisfaction < 99);
    draw(r.satisfaction.svg, series(h, 'satisfaction'), span, {ymax: 100});
    r.satisfaction.scale.textContent = '0–100 %';
    const target = slo === null ? ' within the best-effort target' : ' within the SLO';
    r.satisfaction.caption.textContent = fmtInt(a.within_slo) + ' of ' + fmtInt(a.delivered) + target;

    r.lessees.value.textContent = String(last.lessees);
    const lmax = draw(r.lessees.svg, series(h, 'lessees'), span, {step: true});
    r.lessees.scale.textContent = 'max ' + fmtShort(lmax);
    r.lessees.caption.textContent = 'cores leased by this app now';
  }

  function updateApps(list, t, at) {
    const container = document.getElementById('apps');
    const seen = new Set();
    for (const a of list) {
      seen.add(a.name);
      let state = apps.get(a.name);
      if (!state) {
        state = appRow(a.name);
        apps.set(a.name, state);
        container.appendChild(state.row.root);
      }
      sampleApp(state, a, t, at);
    }
    for (const [name, state] of apps) {
      if (!seen.has(name)) {
        state.row.root.remove();
        apps.delete(name);
      }
    }
    document.getElementById('no-apps').hidden = list.length > 0;
  }

  // ---- shards -----------------------------------------------------------

  function shardCard(i) {
    const root = el('div', 'shard');
    root.dataset.shard = String(i);
    const head = el('div', 'figure');
    head.appendChild(el('span', 'label', 'shard ' + i));
    const busy = metric(head, 'busy');
    head.appendChild(el('span', 'unit', '% busy'));
    root.appendChild(head);
    const svg = svgEl('svg', {viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none'});
    svg.classList.add('chart');
    root.appendChild(svg);
    const caption = el('div', 'caption');
    root.appendChild(caption);
    return {root: root, busy: busy, svg: svg, caption: caption, history: [], prev: null};
  }

  function sampleShard(s, x, t, at) {
    if (s.prev && (x.busy_ns < s.prev.busy_ns || t <= s.prev.t)) s.history = [];
    const keep = s.prev && s.history.length > 0;
    const share = keep ? (x.busy_ns - s.prev.busy_ns) / ((t - s.prev.t) * 1e6) : null;
    s.prev = {t: t, busy_ns: x.busy_ns};
    s.history.push({t: at, busy: share === null ? null : Math.min(1, Math.max(0, share)) * 100});
    while (s.history.length > 1 && at - s.history[0].t > HISTORY_MS) s.history.shift();
  }

  function renderShard(s, x, span) {
    const last = s.history[s.history.length - 1];
    s.root.dataset.samples = String(s.history.length);
    s.busy.textContent = last.busy === null ? '–' : last.busy.toFixed(1);
    s.root.classList.toggle('died', !!x.died);
    draw(s.svg, series(s.history, 'busy'), span, {ymax: 100});
    const parts = ['backlog ' + x.backlog, 'lessors ' + x.lessors, 'lessees ' + x.lessees];
    s.caption.textContent = x.died ? 'died: ' + x.died : parts.join(' · ');
  }

  function updateShards(list, t, at) {
    const container = document.getElementById('shards');
    for (const x of list) {
      let s = shards.get(x.shard);
      if (!s) {
        s = shardCard(x.shard);
        shards.set(x.shard, s);
        container.appendChild(s.root);
      }
      sampleShard(s, x, t, at);
    }
  }

  // ---- the loop ---------------------------------------------------------

  function spanOf(t) {
    let first = t;
    for (const s of apps.values()) if (s.history.length) first = Math.min(first, s.history[0].t);
    for (const s of shards.values()) if (s.history.length) first = Math.min(first, s.history[0].t);
    const width = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, t - first));
    return [t - width, t];
  }

  function render(stats, at) {
    const span = spanOf(at);
    const byName = new Map(stats.apps.map((a) => [a.name, a]));
    for (const [name, state] of apps) renderApp(state, byName.get(name), span);
    const byShard = new Map(stats.shards.map((x) => [x.shard, x]));
    for (const [i, s] of shards) if (byShard.has(i)) renderShard(s, byShard.get(i), span);
    document.getElementById('uptime').textContent = fmtUptime(stats.now_ns);
    const n = stats.apps.length;
    document.getElementById('counts').textContent =
      stats.shards.length + ' shards · ' + n + (n === 1 ? ' app' : ' apps');
    document.getElementById('span').textContent = 'last ' + fmtSpan(span[1] - span[0]);
  }

  function setStatus(state, text) {
    const s = document.getElementById('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function accept(stats) {
    const t = stats.now_ns / 1e6;
    const at = Date.now();
    updateApps(stats.apps, t, at);
    updateShards(stats.shards, t, at);
    render(stats, at);
    updates += 1;
    document.body.dataset.updates = String(updates);
    delete document.body.dataset.error;
    setStatus('live', 'live · ' + new Date().toLocaleTimeString());
  }

  function refuse(code, message) {
    document.body.dataset.error = code;
    const hint = code === 'unauthorized' ? ' — open this page as /?token=<admin token>' : '';
    setStatus('error', code + ': ' + message + hint);
  }

  async function poll() {
    const started = Date.now();
    try {
      const headers = token ? {Authorization: 'Bearer ' + token} : {};
      const r = await fetch('/v1/stats', {headers: headers, cache: 'no-store'});
      const body = await r.json();
      if (r.ok) accept(body);
      else refuse((body.error && body.error.code) || 'http_' + r.status, (body.error && body.error.message) || r.statusText);
    } catch (e) {
      refuse('unreachable', 'the node did not answer (' + e.message + '); retrying');
    }
    setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  poll();
})();
