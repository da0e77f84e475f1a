// Glue between the dashboard's JSON API and plotly.js: no charting code of its own.
// Each page polls its endpoint; the study page asks only for what changed since the last
// sequence number it saw, merges it, and redraws with Plotly.react and a fixed uirevision, so a
// user's zoom survives every update; table rows are kept and updated in place.
"use strict";

const body = document.body;
const ROOT = body.dataset.root || "";
const POLL_MS = 1000;
const TABLE_LIMIT = 200; // rows per table page (sorted and filtered by the server)
const TIMELINE_LIMIT = 3000; // most recent running stretches drawn
const CURVE_LIMIT = 500; // curves drawn: those that went furthest first, then the newest
const PALETTE = ["#440154", "#3b528b", "#21918c", "#5ec962", "#c8b800", "#fd8d3c", "#e6194b"];
const NO_MILESTONE = "#9aa0a6";

// A token given as #token=... (a fragment is never sent to a server) is kept for this tab.
(function keepToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("aio_ashb_token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

async function api(path) {
  const token = sessionStorage.getItem("aio_ashb_token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(ROOT + path, { headers, cache: "no-store" });
  const data = await r.json();
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    // Six significant digits, without the fraction's trailing zeros: never the integer part's
    // (100000.3 is "100000", not "1") nor the exponent's.
    const [digits, exp] = v.toPrecision(6).split("e");
    const short = digits.includes(".") ? digits.replace(/\.?0+$/, "") : digits;
    return exp === undefined ? short : `${short}e${exp}`;
  }
  return String(v);
}

function setText(id, v) {
  const el = document.getElementById(id);
  const text = fmt(v);
  if (el && el.textContent !== text) el.textContent = text;
}

function live(ok, text) {
  const el = document.getElementById("live");
  el.textContent = ok ? "live · updated " + new Date().toLocaleTimeString() : "not updating: " + text;
}

function levelColour(level) {
  return level < 0 ? NO_MILESTONE : PALETTE[level % PALETTE.length];
}

function studyUrl(name) {
  return ROOT + "/studies/" + encodeURIComponent(name);
}

const LAYOUT = {
  uirevision: "keep", // the user's zoom and pan survive Plotly.react
  margin: { l: 60, r: 10, t: 10, b: 50 },
  legend: { orientation: "h", y: -0.25 },
  font: { size: 12 },
};
const CONFIG = { responsive: true, displaylogo: false };

function axes(x, y, extra) {
  return Object.assign({}, LAYOUT, { xaxis: Object.assign({ title: { text: x } }, extra && extra.x), yaxis: Object.assign({ title: { text: y } }, extra && extra.y) }, extra && extra.layout);
}

async function loop(step, charts) {
  for (let turn = 0; ; turn++) {
    try {
      await step();
      live(true);
    } catch (e) {
      live(false, e.message);
    }
    // plotly.js takes seconds to evaluate on a slow machine, and blocks the page meanwhile:
    // it is loaded once the numbers and the table are shown; charts are drawn when it is there.
    if (charts && turn === 0) loadPlotly();
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function loadPlotly() {
  const s = document.createElement("script");
  s.src = ROOT + "/static/plotly.min.js";
  document.body.appendChild(s);
}

// ------------------------------------------------------------------ studies page
function studiesPage() {
  const tbody = document.querySelector("#studies tbody");
  const rows = new Map();
  return loop(async () => {
    const data = await api("/api/studies");
    document.getElementById("empty").hidden = data.studies.length > 0;
    const now = Date.now() / 1000;
    for (const s of data.studies) {
      let tr = rows.get(s.name);
      if (!tr) {
        tr = document.createElement("tr");
        tr.innerHTML = "<th scope=row><a></a></th><td></td><td class=trials></td><td></td><td></td><td class=best></td><td></td>";
        const a = tr.querySelector("a");
        a.href = studyUrl(s.name);
        a.textContent = s.name;
        rows.set(s.name, tr);
        tbody.appendChild(tr);
      }
      const cells = [null, s.direction, s.trials, s.running, s.reports ?? "counting…", s.best, Math.max(0, now - s.last_event).toFixed(0)];
      cells.forEach((v, i) => {
        if (i > 0 && tr.cells[i].textContent !== fmt(v)) tr.cells[i].textContent = fmt(v);
      });
    }
  });
}

// ------------------------------------------------------------------ study page
function studyPage() {
  const name = body.dataset.study;
  const trials = new Map(); // number -> row (with its thinned curve and marks)
  const segments = new Map(); // id -> [id, number, slot, start, end]
  const trRows = new Map(); // number -> <tr>, reused across updates
  let seq = 0;
  let viewId = null;
  let last = null;
  let charted = false;
  let columns = [];
  const sort = { key: "number", dir: 1 };
  const tbody = document.querySelector("#trials tbody");
  const headRow = document.querySelector("#trials thead tr");
  const fState = document.getElementById("filter-state");
  const fRung = document.getElementById("filter-rung");
  const fSearch = document.getElementById("filter-search");
  let tableAsked = 0; // answers to older table requests are dropped
  let searchTimer = null;
  for (const el of [fState, fRung]) el.addEventListener("input", loadTable);
  fSearch.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadTable, 200);
  });

  function header(paramNames) {
    const cols = ["number", "state", "bracket", "resource", "value", "step", "last_value", ...paramNames.map((p) => "params." + p)];
    if (cols.join() === columns.join()) return;
    columns = cols;
    headRow.replaceChildren();
    for (const c of cols) {
      const th = document.createElement("th");
      th.scope = "col";
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = c === "resource" ? "resource (highest milestone)" : c;
      b.dataset.key = c;
      b.addEventListener("click", () => {
        sort.dir = sort.key === c ? -sort.dir : 1;
        sort.key = c;
        loadTable();
      });
      th.appendChild(b);
      headRow.appendChild(th);
    }
  }

  function options(select, values) {
    const have = new Set([...select.options].map((o) => o.value));
    for (const v of values) {
      if (have.has(String(v))) continue;
      const o = document.createElement("option");
      o.value = String(v);
      o.textContent = String(v);
      select.appendChild(o);
    }
  }

  // A page of the table, sorted and filtered by the server: a study may hold 100,000 trials.
  async function loadTable() {
    const asked = ++tableAsked;
    const q = new URLSearchParams({ sort: sort.key, order: sort.dir > 0 ? "asc" : "desc", limit: TABLE_LIMIT });
    if (fState.value) q.set("state", fState.value);
    if (fRung.value) q.set("resource", fRung.value);
    if (fSearch.value.trim()) q.set("q", fSearch.value.trim());
    const page = await api("/api/studies/" + encodeURIComponent(name) + "/table?" + q);
    if (asked === tableAsked) renderTable(page);
  }

  function renderTable(page) {
    if (trRows.size > 5000) trRows.clear(); // rows of pages seen long ago are made again
    for (const th of headRow.children) {
      const key = th.firstChild.dataset.key;
      if (key === sort.key) th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    const nodes = page.rows.map((t) => {
      let tr = trRows.get(t.number);
      if (!tr) {
        tr = document.createElement("tr");
        trRows.set(t.number, tr);
      }
      if (tr.dataset.cols !== columns.join()) {
        tr.replaceChildren(...columns.map(() => document.createElement("td")));
        const a = document.createElement("a");
        a.href = studyUrl(name) + "/trials/" + t.number;
        tr.cells[0].appendChild(a);
        tr.dataset.cols = columns.join();
      }
      columns.forEach((c, i) => {
        const text = fmt(t[c]);
        const cell = i === 0 ? tr.cells[0].firstChild : tr.cells[i];
        if (cell.textContent !== text) cell.textContent = text;
      });
      return tr;
    });
    const same = nodes.length === tbody.children.length && nodes.every((n, i) => tbody.children[i] === n);
    if (!same) tbody.replaceChildren(...nodes);
    setText("shown", page.total > nodes.length ? `showing ${nodes.length} of ${page.total} matching trials` : `${page.total} trials`);
  }

  function drawCharts(u) {
    const elapsed = u.summary.last_event - u.summary.created;
    const dir = u.status.direction;
    Plotly.react(
      "chart-best",
      [{ x: u.best.t, y: u.best.value, mode: "lines+markers", line: { shape: "hv" }, name: "best so far", hovertemplate: "%{x:.1f} s: %{y}<extra></extra>" }],
      axes("time since the study was created (s)", `best value so far (${dir})`),
      CONFIG,
    );

    // One trace per colour, curves separated by gaps: thousands of trials stay one trace each.
    const levels = new Map();
    const marks = { promoted: [[], [], []], paused: [[], [], []], stopped: [[], [], []], failed: [[], [], []] };
    let drawn = [...trials.values()];
    if (drawn.length > CURVE_LIMIT) {
      drawn = drawn.sort((a, b) => b.level - a.level || b.number - a.number).slice(0, CURVE_LIMIT);
    }
    const total = u.summary.trials; // (the server sends the rows of the drawn trials only)
    setText("curves-shown", drawn.length < total ? `(${drawn.length} of ${total} trials drawn: those that went furthest)` : "");
    for (const t of drawn) {
      let tr = levels.get(t.level);
      if (!tr) levels.set(t.level, (tr = { x: [], y: [], n: [] }));
      const [steps, values] = t.curve;
      for (let i = 0; i < steps.length; i++) {
        tr.x.push(steps[i]);
        tr.y.push(values[i]);
        tr.n.push(t.number);
      }
      tr.x.push(null);
      tr.y.push(null);
      tr.n.push(null);
      for (const [kind, s, v] of t.marks) {
        const m = marks[kind];
        if (!m) continue;
        m[0].push(s);
        m[1].push(v);
        m[2].push(t.number);
      }
    }
    const curveTraces = [...levels.keys()].sort((a, b) => a - b).map((lv) => {
      const tr = levels.get(lv);
      return {
        x: tr.x, y: tr.y, customdata: tr.n, mode: "lines", connectgaps: false,
        line: { color: levelColour(lv), width: 1 }, opacity: lv < 0 ? 0.5 : 0.85,
        name: lv < 0 ? "no milestone yet" : "reached " + u.milestones[lv],
        hovertemplate: "trial %{customdata}: step %{x}, value %{y}<extra></extra>",
      };
    });
    const symbols = { promoted: "triangle-up", paused: "circle-open", stopped: "x", failed: "diamond" };
    for (const [kind, m] of Object.entries(marks)) {
      if (!m[0].length) continue;
      curveTraces.push({
        x: m[0], y: m[1], customdata: m[2], mode: "markers", name: kind,
        marker: { symbol: symbols[kind], size: 7, color: "#111" },
        hovertemplate: "trial %{customdata} " + kind + " at step %{x}<extra></extra>",
      });
    }
    const shapes = u.milestones.map((m) => ({ type: "line", xref: "x", yref: "paper", x0: m, x1: m, y0: 0, y1: 1, line: { dash: "dot", width: 1, color: "#888" } }));
    Plotly.react("chart-curves", curveTraces, axes("resource (steps, log scale; dotted: milestones)", "reported value", { x: { type: "log" }, layout: { shapes } }), CONFIG);

    const labels = u.rungs.map((r) => r.label);
    const bars = ["reached", "promoted", "paused", "stopped"].map((k) => ({ type: "bar", name: k, x: labels, y: u.rungs.map((r) => r[k]) }));
    Plotly.react("chart-rungs", bars, axes("rung (resource milestone)", "trials (count)", { layout: { barmode: "group" } }), CONFIG);

    const segs = [...segments.values()].slice(-TIMELINE_LIMIT);
    Plotly.react(
      "chart-timeline",
      [{
        type: "bar", orientation: "h", name: "running",
        y: segs.map((s) => s[2]), base: segs.map((s) => s[3]),
        x: segs.map((s) => Math.max((s[4] === null ? elapsed : s[4]) - s[3], 1e-3)),
        customdata: segs.map((s) => s[1]),
        marker: { color: segs.map((s) => levelColour(trials.has(s[1]) ? trials.get(s[1]).level : -1)) },
        hovertemplate: "trial %{customdata} on slot %{y}: from %{base:.2f} s<extra></extra>",
      }],
      axes("time since the study was created (s)", "slot (derived)", { y: { dtick: 1 }, layout: { bargap: 0.15, showlegend: false } }),
      CONFIG,
    );
  }

  function openTrialOnClick(id) {
    const el = document.getElementById(id);
    el.on("plotly_click", (ev) => {
      const n = ev.points && ev.points[0] && ev.points[0].customdata;
      if (n !== null && n !== undefined) location.href = studyUrl(name) + "/trials/" + n;
    });
  }

  return loop(async () => {
    const u = await api("/api/studies/" + encodeURIComponent(name) + "?since=" + seq + (viewId ? "&view=" + viewId : ""));
    viewId = u.view; // segment ids are that view's: another one answers in full
    if (u.full) {
      trials.clear();
      segments.clear();
    }
    for (const t of u.trials) trials.set(t.number, t);
    for (const s of u.segments) segments.set(s[0], s);
    const changed = last === null || u.seq !== seq;
    seq = u.seq;
    last = u;
    setText("trial-count", u.summary.trials);
    setText("running", u.summary.running);
    setText("reports", u.summary.reports ?? "counting…"); // a large study's count arrives later
    setText("best-value", u.summary.best);
    setText("best-trial", u.summary.best_trial);
    document.getElementById("best-label").textContent = `best value (${u.status.direction}, at the highest milestone)`;
    if (changed) {
      header(u.param_names);
      options(fState, Object.keys(u.status.states));
      options(fRung, [0, ...u.milestones]);
      await loadTable();
    }
    // plotly.js loads in parallel (it takes seconds to evaluate on a slow machine): the
    // numbers and the table come first, the charts as soon as it is there.
    if (typeof Plotly !== "undefined" && (changed || !charted)) {
      drawCharts(u);
      if (!charted) ["chart-curves", "chart-timeline"].forEach(openTrialOnClick);
      charted = true;
    }
  }, true);
}

// ------------------------------------------------------------------ trial page
function trialPage() {
  const name = body.dataset.study;
  const number = body.dataset.trial;
  let seq = -1;
  let charted = false;
  return loop(async () => {
    const t = await api("/api/studies/" + encodeURIComponent(name) + "/trials/" + number);
    if (t.seq === seq && (charted || typeof Plotly === "undefined")) return;
    seq = t.seq;
    for (const k of ["state", "bracket", "resource", "value", "step"]) setText(k, t[k]);
    setText("checkpoint", t.checkpoint_step === null ? "none" : t.checkpoint_step);
    setText("checkpoints", t.checkpoints.length ? t.checkpoints.join(", ") : "none");
    const fill = (id, obj) => {
      const tb = document.querySelector("#" + id + " tbody");
      tb.replaceChildren(
        ...Object.entries(obj).map(([k, v]) => {
          const tr = document.createElement("tr");
          const th = document.createElement("th");
          th.scope = "row";
          th.textContent = k;
          const td = document.createElement("td");
          td.textContent = fmt(v);
          tr.append(th, td);
          return tr;
        }),
      );
    };
    fill("params", t.params);
    fill("rung-values", t.rung_values);
    document.getElementById("error-section").hidden = !t.error;
    document.getElementById("error").textContent = t.error || "";
    const shapes = t.milestones.map((m) => ({ type: "line", xref: "x", yref: "paper", x0: m, x1: m, y0: 0, y1: 1, line: { dash: "dot", width: 1, color: "#888" } }));
    const traces = [{ x: t.curve[0], y: t.curve[1], mode: "lines+markers", name: "reports", line: { color: levelColour(t.level) } }];
    if (t.marks.length) {
      traces.push({ x: t.marks.map((m) => m[1]), y: t.marks.map((m) => m[2]), text: t.marks.map((m) => m[0]), mode: "markers+text", textposition: "top center", name: "decisions", marker: { size: 9, color: "#111", symbol: "triangle-up" } });
    }
    if (typeof Plotly === "undefined") return; // (drawn on a later poll, once it has loaded)
    Plotly.react("chart-curve", traces, axes("resource (steps, log scale)", "reported value", { x: { type: "log" }, layout: { shapes } }), CONFIG);
    charted = true;
  }, true);
}

({ studies: studiesPage, study: studyPage, trial: trialPage })[body.dataset.page]();
