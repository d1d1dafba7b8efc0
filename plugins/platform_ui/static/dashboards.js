// Dashboards (issue 13): one script for the five pages; each fetches its JSON from api/... (same origin, so
// Airflow's `_token` cookie authenticates it), renders tables and Chart.js charts, and finally sets
// body[data-ready="1"] (or body[data-error] with the message). Charts are kept in window.dashCharts so
// tests can read the numbers they show.
"use strict";
window.dashCharts = {};
const PAGE_SIZE = 50;
const params = new URLSearchParams(location.search);
const $ = (sel) => document.querySelector(sel);

const fmt = {
  int: (v) => (v === null || v === undefined ? "–" : String(Math.round(v))),
  f: (d) => (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  time: (v) => (v ? new Date(v).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–"),
};
fmt.eps = fmt.f(4); fmt.sec = fmt.f(1); fmt.util = fmt.f(2); fmt.pct = fmt.f(1); fmt.mb = fmt.f(1);

class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const d = body && body.detail;
    throw new ApiError(r.status, typeof d === "string" ? d : JSON.stringify(d));
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v); else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

const badge = (v) => el("span", { class: `badge ${v}` }, v ?? "–");

// columns: [key, header, formatter | null, numeric?]; rows get data-id = row[idKey]
function table(id, columns, rows, idKey, cellFor) {
  const head = el("tr", {}, columns.map(([k, h, , num]) => el("th", { class: num ? "num" : null }, h)));
  const body = rows.map((r) => el("tr", { "data-id": r[idKey] }, columns.map(([k, , f, num]) => {
    const custom = cellFor && cellFor(k, r);
    return el("td", { "data-k": k, class: num ? "num" : null }, custom ?? (f ? f(r[k]) : String(r[k] ?? "–")));
  })));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, body));
}

function pager(page, onPage) {
  const { total, limit, offset } = page;
  const last = Math.max(0, Math.floor((total - 1) / limit) * limit);
  return el("div", { class: "pager", "data-total": total },
    el("button", { disabled: offset === 0 ? "" : null, onclick: () => onPage(Math.max(0, offset - limit)) }, "‹ prev"),
    `${total ? offset + 1 : 0}–${Math.min(offset + limit, total)} of ${total}`,
    el("button", { disabled: offset >= last ? "" : null, onclick: () => onPage(offset + limit) }, "next ›"));
}

function chart(name, holder, config) {
  if (window.dashCharts[name]) window.dashCharts[name].destroy();
  const canvas = el("canvas", { id: `chart-${name}` });
  holder.replaceChildren(canvas);
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  window.dashCharts[name] = new Chart(canvas, config);
  return window.dashCharts[name];
}

// error bars for a bar chart: dataset option `intervals: [[low, high], ...]`
const errorBars = {
  id: "errorBars",
  afterDatasetsDraw(c) {
    const ctx = c.ctx;
    c.data.datasets.forEach((ds, i) => {
      if (!ds.intervals) return;
      const meta = c.getDatasetMeta(i);
      ctx.save(); ctx.strokeStyle = "#1a202c"; ctx.lineWidth = 1.5;
      meta.data.forEach((bar, j) => {
        const iv = ds.intervals[j]; if (!iv) return;
        const y1 = c.scales.y.getPixelForValue(iv[0]), y2 = c.scales.y.getPixelForValue(iv[1]);
        ctx.beginPath(); ctx.moveTo(bar.x, y1); ctx.lineTo(bar.x, y2);
        ctx.moveTo(bar.x - 5, y1); ctx.lineTo(bar.x + 5, y1); ctx.moveTo(bar.x - 5, y2); ctx.lineTo(bar.x + 5, y2);
        ctx.stroke();
      });
      ctx.restore();
    });
  },
};

// a bar dataset on the left axis (y), a line dataset on the right one (y1)
const DUAL_AXES = { scales: { y: { position: "left", beginAtZero: true },
  y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } };
const section = (title, ...children) => el("section", {}, el("h2", {}, title), ...children);
const chartBox = (id) => el("div", { class: "chart", id });

// ---------------------------------------------------------------- rounds
async function renderRounds(offset = 0) {
  const dagId = params.get("dag_id");
  const main = $("#main");
  if (dagId && dagId !== "federated_round") {
    main.replaceChildren(el("p", { class: "muted" }, `DAG ${dagId} runs no federated rounds.`));
    return;
  }
  const page = await api(`api/rounds?limit=${PAGE_SIZE}&offset=${offset}`);
  const statusBox = chartBox("rounds-status"), durBox = chartBox("rounds-duration");
  const cols = [["round_number", "#", fmt.int, true], ["status", "Status"], ["started_at", "Started", fmt.time],
    ["duration_seconds", "Duration (s)", fmt.sec, true], ["invited", "Invited", fmt.int, true],
    ["participants", "Participants", fmt.int, true], ["dropouts", "Dropouts", fmt.int, true],
    ["declined", "Declined", fmt.int, true], ["epsilon_per_store", "ε per store", fmt.eps, true],
    ["epsilon_spent", "ε spent (all stores)", fmt.eps, true], ["patterns_aggregated", "Patterns", fmt.int, true]];
  const results = el("div", { id: "search-results" });
  const input = el("input", { id: "search-q", type: "search", placeholder: "items, e.g. wine cheese", size: "30" });
  const scopeSel = el("select", { id: "search-round" }, el("option", { value: "latest" }, "latest round"),
    el("option", { value: "all" }, "every round"));
  const form = el("form", { id: "search" }, "Search global patterns: ", input, " ", scopeSel, " ", el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => { e.preventDefault(); search(input.value, scopeSel.value, results); });
  main.replaceChildren(form, results,
    el("div", { class: "charts" }, statusBox, durBox),
    section("Rounds", pager(page, renderRounds), table("rounds", cols, page.items, "id", (k, r) =>
      k === "round_number" ? el("a", { href: `round?id=${r.id}` }, fmt.int(r.round_number))
        : k === "status" ? badge(r.status) : null)));
  const statuses = Object.keys(page.by_status).sort();
  chart("status", statusBox, { type: "bar", data: { labels: statuses,
    datasets: [{ label: "rounds per status (all)", data: statuses.map((s) => page.by_status[s]) }] } });
  const shown = [...page.items].reverse();
  chart("duration", durBox, { type: "bar", data: { labels: shown.map((r) => `#${r.round_number}`),
    datasets: [{ label: "duration (s), this page", data: shown.map((r) => r.duration_seconds), yAxisID: "y" },
      { label: "participants", data: shown.map((r) => r.participants), type: "line", yAxisID: "y1" }] },
    options: DUAL_AXES });
}

async function search(q, round, holder) {
  holder.dataset.ready = "0";
  try {
    const r = await api(`api/search?q=${encodeURIComponent(q)}&round=${round}`);
    const cols = [["round_number", "Round", fmt.int, true], ["pattern_items", "Items"], ["aggregated_utility", "Utility", fmt.util, true],
      ["utility_ci_low", "95 % low", fmt.util, true], ["utility_ci_high", "95 % high", fmt.util, true], ["confident", "Confident"]];
    holder.replaceChildren(el("p", { "data-k": "total" }, `${r.total} patterns`), table("search-hits", cols, r.hits, "round_id", (k, p) =>
      k === "round_number" ? el("a", { href: `round?id=${p.round_id}` }, `#${p.round_number}`)
        : k === "pattern_items" ? p.pattern_items.join(", ") : k === "confident" ? badge(p.confident ? "yes" : "no") : null));
  } catch (e) {
    holder.replaceChildren(el("p", { class: "error" }, e.message));
  }
  holder.dataset.ready = "1";
}

// ---------------------------------------------------------------- one round
async function renderRound(offset = 0) {
  let id = params.get("id");
  if (!id && params.get("dag_run_id")) {
    id = (await api(`api/rounds?dag_run_id=${encodeURIComponent(params.get("dag_run_id"))}`)).round_id;
    if (!id) { $("#main").replaceChildren(el("p", { class: "muted" }, "This DAG run has no federated round.")); return; }
  }
  if (!id) throw new ApiError(422, "give ?id=<round id>");
  const [r, pats] = await Promise.all([api(`api/rounds/${id}`), api(`api/rounds/${id}/patterns?limit=20&offset=${offset}`)]);
  $("#title").textContent = `Round ${r.round_number}`;
  const summary = [["status", "Status"], ["mode", "Mode"], ["started_at", "Started", fmt.time],
    ["completed_at", "Completed", fmt.time], ["duration_seconds", "Duration (s)", fmt.sec], ["invited", "Invited", fmt.int],
    ["participants", "Participants", fmt.int], ["dropouts", "Dropouts", fmt.int], ["declined", "Declined", fmt.int],
    ["epsilon_per_store", "ε per store", fmt.eps], ["epsilon_spent", "ε spent (all stores)", fmt.eps],
    ["patterns_aggregated", "Patterns", fmt.int], ["error_message", "Error"]];
  const sumTable = el("table", { id: "summary" }, el("tbody", {}, summary.map(([k, h, f]) =>
    el("tr", {}, el("th", {}, h), el("td", { "data-k": k }, f ? f(r[k]) : String(r[k] ?? "–"))))));
  const levelBox = chartBox("round-levels"), patBox = chartBox("round-patterns"), trendBox = chartBox("pattern-trend");
  const levelCols = [["level", "Level", fmt.int, true], ["candidates", "Candidates", fmt.int, true],
    ["clients", "Clients", fmt.int, true], ["survivors", "Survivors", fmt.int, true], ["dropped", "Dropped", fmt.int, true],
    ["seconds", "Time (s)", fmt.f(3), true]];
  const storeCols = [["name", "Store"], ["outcome", "Outcome"], ["patterns_contributed", "Values contributed", fmt.int, true],
    ["privacy_epsilon", "ε charged", fmt.eps, true], ["contribution_timestamp", "At", fmt.time]];
  const patCols = [["pattern_rank", "Rank", fmt.int, true], ["pattern_items", "Items"], ["utility", "Utility", fmt.util, true],
    ["ci_low", "95 % low", fmt.util, true], ["ci_high", "95 % high", fmt.util, true],
    ["coverage_percent", "Coverage %", fmt.pct, true], ["contributing_stores", "Stores", fmt.int, true], ["confident", "Confident"]];
  $("#main").replaceChildren(sumTable,
    section("Levels (phases)", el("div", { class: "charts" }, levelBox), table("levels", levelCols, r.levels, "level")),
    section("Stores", table("stores", storeCols, r.stores, "store_id", (k, s) => (k === "outcome" ? badge(s.outcome) : null))),
    section("Top global patterns", el("div", { class: "charts" }, patBox, trendBox),
      pager(pats, renderRound),
      table("patterns", patCols, pats.items, "id", (k, p) =>
        k === "pattern_items" ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); renderTrend(p.pattern_items, trendBox); } },
          p.pattern_items.join(", "))
          : k === "confident" ? badge(p.confident ? "yes" : "no") : null)));
  chart("levels", levelBox, { type: "bar", data: { labels: r.levels.map((l) => `level ${l.level}`),
    datasets: [{ label: "seconds", data: r.levels.map((l) => l.seconds), yAxisID: "y" },
      { label: "survivors", data: r.levels.map((l) => l.survivors), type: "line", yAxisID: "y1" }] },
    options: DUAL_AXES });
  chart("patterns", patBox, { type: "bar", plugins: [errorBars], data: { labels: pats.items.map((p) => p.pattern_items.join(", ")),
    datasets: [{ label: "utility (95 % interval)", data: pats.items.map((p) => p.utility),
      intervals: pats.items.map((p) => (p.ci_low === null ? null : [p.ci_low, p.ci_high])),
      backgroundColor: pats.items.map((p) => (p.confident ? "rgba(56,161,105,0.6)" : "rgba(160,174,192,0.6)")) }] } });
  if (pats.items.length) await renderTrend(pats.items[0].pattern_items, trendBox);
}

async function renderTrend(items, box) {
  const q = items.map((i) => `items=${encodeURIComponent(i)}`).join("&");
  const t = await api(`api/patterns/trend?${q}`);
  chart("trend", box, { type: "line", data: { labels: t.points.map((p) => `#${p.round_number}`),
    datasets: [{ label: `utility of ${t.items.join(", ")} per round`, data: t.points.map((p) => p.utility) },
      { label: "95 % low", data: t.points.map((p) => p.ci_low), borderDash: [4, 4], pointRadius: 0 },
      { label: "95 % high", data: t.points.map((p) => p.ci_high), borderDash: [4, 4], pointRadius: 0 }] } });
}

// ---------------------------------------------------------------- privacy budget
async function renderPrivacy(offset = 0) {
  const page = await api(`api/privacy?limit=${PAGE_SIZE}&offset=${offset}`);
  const cap = page.cap.global_epsilon;
  const barBox = chartBox("privacy-stores"), seriesBox = chartBox("privacy-series");
  const warn = page.items.filter((s) => s.status === "warning" || s.status === "exhausted");
  const cols = [["name", "Store"], ["noise_type", "Noise"], ["lifetime_epsilon", "Lifetime ε", fmt.eps, true],
    ["spent_epsilon", "ε spent", fmt.eps, true], ["fraction", "Used %", (v) => fmt.pct(v === null ? null : 100 * v), true],
    ["status", "Status"], ["releases", "Releases", fmt.int, true], ["last_release_at", "Last release", fmt.time]];
  $("#main").replaceChildren(
    el("p", { id: "cap" }, "Global cap per window: ", el("b", { "data-k": "global_epsilon" }, cap ? `ε ${fmt.eps(cap)}` : "none"),
      ` at δ ${page.cap.delta}; warning at ${fmt.pct(100 * page.cap.warn_fraction)} % of a store's lifetime budget.`),
    warn.length ? el("div", { class: "banner", id: "warnings" },
      `${warn.length} store(s) near or at exhaustion on this page: ${warn.map((s) => s.name).join(", ")}`) : "",
    el("div", { class: "charts" }, barBox, seriesBox),
    section("Stores", pager(page, renderPrivacy), table("budgets", cols, page.items, "store_id", (k, s) =>
      k === "status" ? badge(s.status)
        : k === "name" ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); renderSeries(s.store_id, seriesBox); } }, s.name) : null)));
  chart("budgets", barBox, { type: "bar", data: { labels: page.items.map((s) => s.name),
    datasets: [{ label: "ε spent", data: page.items.map((s) => s.spent_epsilon) },
      { label: "lifetime ε", data: page.items.map((s) => s.lifetime_epsilon) },
      ...(cap ? [{ label: "global cap per window", type: "line", data: page.items.map(() => cap), pointRadius: 0 }] : [])] } });
  const first = page.items.find((s) => s.lifetime_epsilon);
  if (first) await renderSeries(first.store_id, seriesBox);
}

async function renderSeries(storeId, box) {
  const s = await api(`api/privacy/stores/${storeId}`);
  const labels = s.points.map((p) => fmt.time(p.at));
  chart("series", box, { type: "line", data: { labels, datasets: [
    { label: `${s.name}: ε spent`, data: s.points.map((p) => p.spent_epsilon), stepped: true },
    { label: "lifetime ε", data: s.points.map(() => s.lifetime_epsilon), pointRadius: 0, borderDash: [6, 3] },
    ...(s.cap.global_epsilon ? [{ label: "global cap", data: s.points.map(() => s.cap.global_epsilon), pointRadius: 0, borderDash: [2, 2] }] : [])] } });
}

// ---------------------------------------------------------------- ingestion
const STATUSES = ["pending", "processing", "completed", "failed"];
async function renderIngestion(offset = 0) {
  const [files, rowsT, errors] = await Promise.all([api(`api/ingestion/files?limit=${PAGE_SIZE}&offset=${offset}`),
    api("api/ingestion/rows?days=30&bucket=day"), api("api/ingestion/errors?limit=20")]);
  const fBox = chartBox("ingestion-files"), rBox = chartBox("ingestion-rows");
  const cols = [["name", "Store"], ...STATUSES.map((s) => [s, s, fmt.int, true]), ["files", "Files", fmt.int, true]];
  const errCols = [["upload_timestamp", "Uploaded", fmt.time], ["store_name", "Store"], ["filename", "File"],
    ["processing_status", "Status"], ["rows_loaded", "Loaded", fmt.int, true], ["rows_rejected", "Rejected", fmt.int, true],
    ["error_message", "Error"], ["rejects_url", "Rejects"]];
  $("#main").replaceChildren(
    el("p", { id: "totals" }, STATUSES.map((s) => el("span", { "data-k": s }, `${s}: ${files.totals[s]}  `))),
    el("div", { class: "charts" }, fBox, rBox),
    section("Files per store", pager(files, renderIngestion), table("files", cols, files.items, "store_id")),
    section(`Latest errors (${errors.total})`, table("errors", errCols, errors.items, "file_id", (k, e) =>
      k === "processing_status" ? badge(e.processing_status)
        : k === "rejects_url" ? (e.rejects_url ? el("a", { href: ".." + e.rejects_url }, "rejects.csv") : "–") : null)));
  chart("files", fBox, { type: "bar", data: { labels: files.items.map((s) => s.name),
    datasets: STATUSES.map((st) => ({ label: st, data: files.items.map((s) => s[st]) })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true } } } });
  chart("rows", rBox, { type: "line", data: { labels: rowsT.points.map((p) => p.at.slice(0, 10)),
    datasets: [{ label: "loaded", data: rowsT.points.map((p) => p.rows_loaded) },
      { label: "rejected", data: rowsT.points.map((p) => p.rows_rejected) }] } });
}

// ---------------------------------------------------------------- mining
async function renderMining(offset = 0) {
  const [stores, jobs] = await Promise.all([api(`api/mining/stores?limit=${PAGE_SIZE}&offset=${offset}`),
    api(`api/mining/jobs?limit=${PAGE_SIZE}`)]);
  const tBox = chartBox("mining-time"), mBox = chartBox("mining-memory");
  const sCols = [["name", "Store"], ["jobs", "Jobs", fmt.int, true], ["completed", "Completed", fmt.int, true],
    ["failed", "Failed", fmt.int, true], ["local_jobs", "Local", fmt.int, true], ["spark_jobs", "Spark", fmt.int, true],
    ["mean_seconds", "Mean time (s)", fmt.f(3), true], ["peak_memory_mb", "Peak memory (MB)", fmt.mb, true],
    ["last_patterns_found", "Patterns (last)", fmt.int, true]];
  const jCols = [["started_at", "Started", fmt.time], ["store_name", "Store"], ["status", "Status"], ["engine_path", "Path"],
    ["n_transactions", "Transactions", fmt.int, true], ["execution_time_seconds", "Time (s)", fmt.f(3), true],
    ["memory_used_mb", "Peak memory (MB)", fmt.mb, true], ["patterns_found", "Patterns", fmt.int, true], ["error_message", "Error"]];
  $("#main").replaceChildren(el("div", { class: "charts" }, tBox, mBox),
    section("Stores", pager(stores, renderMining), table("mining-stores", sCols, stores.items, "store_id")),
    section(`Latest jobs (${jobs.total})`, table("jobs", jCols, jobs.items, "job_id", (k, j) =>
      k === "status" ? badge(j.status) : k === "engine_path" ? badge(j.engine_path) : null)));
  const shown = [...jobs.items].reverse();
  const labels = shown.map((j) => `${j.store_name} ${fmt.time(j.started_at).slice(5, 16)}`);
  const colour = shown.map((j) => (j.engine_path === "spark" ? "rgba(214,158,46,0.7)" : "rgba(49,130,206,0.7)"));
  chart("time", tBox, { type: "bar", data: { labels, datasets: [{ label: "time (s): blue local, amber Spark",
    data: shown.map((j) => j.execution_time_seconds), backgroundColor: colour }] } });
  chart("memory", mBox, { type: "bar", data: { labels, datasets: [{ label: "peak memory (MB)", data: shown.map((j) => j.memory_used_mb),
    backgroundColor: colour, yAxisID: "y" }, { label: "patterns", type: "line", data: shown.map((j) => j.patterns_found), yAxisID: "y1" }] },
    options: DUAL_AXES });
}

// 401 (no sign-in, or it ended: expired, revoked): a link to the sign-in form (platform_ui/signin.py), back
// to where the user is: Airflow's page around the iframe when the page is one of its views (same origin)
function signInHint() {
  let here = location.pathname + location.search;
  try {
    if (window.top !== window) here = window.top.location.pathname + window.top.location.search;
  } catch (err) { /* not embedded by Airflow's UI: this page then */ }
  return el("p", { id: "signin-hint" }, "You are not signed in, or your sign-in has ended. ",
    el("a", { id: "signin-link", href: `login?next=${encodeURIComponent(here)}`, target: "_top" }, "Sign in"));
}

const RENDER = { rounds: renderRounds, round: renderRound, privacy: renderPrivacy, ingestion: renderIngestion, mining: renderMining };

async function boot() {
  const page = document.body.dataset.page;
  try {
    await RENDER[page]();
    document.body.dataset.renderedMs = performance.now().toFixed(0);   // since navigation start
    document.body.dataset.ready = "1";
  } catch (e) {
    // a refusal (403/404) is an answer, shown as such: no console error
    $("#message").replaceChildren(el("p", { class: "error", id: "error" }, e.message));
    if (e.status === 401) $("#message").append(signInHint());
    document.body.dataset.error = e.status ? String(e.status) : "error";
    document.body.dataset.ready = "1";
  }
}
boot();
