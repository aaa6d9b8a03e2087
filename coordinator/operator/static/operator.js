// The operator page: polls /v1/status and redraws in place (no full-page refresh).
// Every value from the coordinator goes into the page as text, never as markup.
"use strict";

const POLL_MS = 2000;
const charts = new Map(); // "task/plot" -> uPlot instance

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const secs = (s) => (s < 0 ? "passed" : s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`);

function renderPopulations(populations) {
  const body = document.querySelector("#populations tbody");
  body.replaceChildren(...populations.map((p) => {
    const c = p.checkins;
    const aimed = p.aimed_checkins_per_s === null ? "" : ` (${fmt(p.aimed_checkins_per_s, 1)})`;
    const eligible = c.eligible_fraction === null ? "–" : `${(100 * c.eligible_fraction).toFixed(0)} %`;
    const clauses = c.failed_clauses.map(([clause, n]) => `${clause} ×${n}`).join(", ") || "–";
    return el("tr", {"data-population": p.name},
      el("td", {class: "text"}, p.name), el("td", {}, String(p.registered)),
      el("td", {}, String(p.seen_last_hour)), el("td", {}, fmt(c.checkins_per_s, 1) + aimed),
      el("td", {}, eligible), el("td", {class: "text"}, clauses));
  }));
}

const bytes = (n) => (n === null || n === undefined ? "–" : n < 1e6 ? `${(n / 1e3).toFixed(1)} kB`
  : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(2)} GB`);

function renderDisk(disk) {
  if (!disk) return;
  const row = document.querySelector("#disk tbody tr");
  row.replaceChildren(...["total", "blobs", "updates", "server_opt", "database"].map(
    (k) => el("td", {"data-disk": k}, bytes(disk[k]))));
}

function renderObjects(objects) {
  if (!objects) return;
  const row = document.querySelector("#objects tbody tr");
  row.replaceChildren(el("td", {class: "text", "data-objects": "location"}, objects.error
                        ? `${objects.location} (not answering: ${objects.error})` : objects.location),
                      el("td", {"data-objects": "objects"}, objects.objects === null ? "–" : String(objects.objects)),
                      el("td", {"data-objects": "bytes"}, bytes(objects.bytes)));
}

function renderReleases(releases) {
  if (!releases || !releases.length) return;
  const body = document.querySelector("#releases tbody");
  body.replaceChildren(...releases.map((r) => el("tr", {"data-release": r.release_id},
    el("td", {class: "text"}, r.release_id), el("td", {class: "text"}, `${r.population} / ${r.channel}`),
    el("td", {}, String(r.sequence)),
    el("td", {class: "text"}, r.rollback_of ? `${r.state} (rolls back ${r.rollback_of})` : r.state),
    el("td", {}, `${fmt(r.percent, 0)} %`), el("td", {class: "text"}, `${r.task_id}, round ${r.round}`),
    el("td", {class: "text"}, r.note || "–"))));
}

function bar(value, total) {
  const fill = el("div");
  fill.style.width = `${Math.min(100, total ? (100 * value) / total : 0)}%`;
  return el("div", {class: "bar"}, fill);
}

function renderBuffer(cur) {
  // An asynchronous task: no rounds to wait for; devices training against the concurrency
  // target, the open buffer filling toward K, versions per minute, how stale the updates were.
  const stale = Object.entries(cur.staleness_counts).map(([s, n]) => `${s}: ${n}`).join(", ") || "–";
  return el("div", {class: "current"},
    el("strong", {class: "current-round"}, cur.round === null ? "no buffer open" : `buffer ${cur.round}: ${cur.state}`),
    el("span", {"data-async": "live"}, `training ${cur.live} / ${cur.concurrency}`), bar(cur.live, cur.concurrency),
    el("span", {}, `updates ${cur.reported} / ${cur.goal}`), bar(cur.reported, cur.goal),
    el("span", {"data-async": "rate"}, `versions/min ${fmt(cur.versions_per_min, 1)}`),
    el("span", {"data-async": "staleness"}, `staleness (versions: updates) ${stale}`),
    el("span", {"data-async": "refused"}, `refused as stale (> ${cur.max_staleness}): ${cur.stale_refused}`));
}

function renderCurrent(cur) {
  if (!cur) return el("p", {class: "muted"}, "no round in progress");
  if (cur.mode === "async") return renderBuffer(cur);
  const deadline = cur.state === "selecting" ? cur.selection_deadline_in_s : cur.report_deadline_in_s;
  return el("div", {class: "current"},
    el("strong", {class: "current-round"}, `round ${cur.round}: ${cur.state}`),
    el("span", {}, `selected ${cur.selected} / ${cur.target_selected}`), bar(cur.selected, cur.target_selected),
    el("span", {}, `reports ${cur.reported} / ${cur.goal} (at least ${cur.required})`), bar(cur.reported, cur.goal),
    el("span", {}, `${cur.state === "selecting" ? "selection window" : "deadline"}: ${secs(deadline)}`));
}

const PLOTS = [
  // [key, title, series: [label, field, colour]]
  ["quality", "device eval accuracy / train loss",
   [["eval accuracy", "eval_accuracy", "#1f77b4"], ["train loss", "train_loss", "#d62728"]]],
  ["reports", "reports per round", [["reports", "reports", "#2ca02c"]]],
  ["bytes", "MB per round: updates in, models and checkpoints out",
   [["in", "mb_in", "#9467bd"], ["out", "mb_out", "#17becf"]]],
  ["duration", "round duration (s)", [["seconds", "duration_s", "#ff7f0e"]]],
  ["epsilon", "DP epsilon spent", [["epsilon", "epsilon", "#8c564b"]]],
];

function plotData(history, series) {
  const committed = history.filter((r) => r.state === "committed")
    .map((r) => ({...r, mb_in: r.bytes_in === null ? null : r.bytes_in / 1e6,
      mb_out: r.bytes_out === null || r.bytes_out === undefined ? null : r.bytes_out / 1e6}));
  return [committed.map((r) => r.round), ...series.map(([, field]) => committed.map((r) => r[field]))];
}

function updatePlots(task, container) {
  for (const [key, title, series] of PLOTS) {
    if (key === "epsilon" && !task.history.some((r) => r.epsilon !== null)) continue;
    const id = `${task.task_id}/${key}`;
    const data = plotData(task.history, series);
    if (charts.has(id)) {
      charts.get(id).setData(data);
      continue;
    }
    const target = el("div", {"data-plot": key});
    container.append(target);
    const opts = {
      title, width: 380, height: 200,
      scales: {x: {time: false}},
      axes: [{label: "round"}, {}],
      series: [{label: "round"}, ...series.map(([label, , stroke]) => ({label, stroke, width: 2}))],
    };
    charts.set(id, new uPlot(opts, data, target));
  }
}

function taskSection(task) {
  let section = document.querySelector(`section[data-task="${CSS.escape(task.task_id)}"]`);
  if (!section) {
    section = el("section", {class: "task", "data-task": task.task_id},
      el("h3", {class: "title"}), el("div", {class: "reason muted"}), el("div", {class: "now"}),
      el("div", {class: "evaluations"}),
      el("div", {class: "plots"}), el("table", {class: "recent"}));
    document.getElementById("tasks").append(section);
  }
  return section;
}

function renderTask(task) {
  const section = taskSection(task);
  const title = section.querySelector(".title");
  title.replaceChildren(`${task.task_id} `,
    el("small", {}, `${task.model_name}, population ${task.population}: ${task.state}, `),
    el("small", {class: "rounds-committed"}, String(task.rounds_committed)),
    el("small", {}, ` / ${task.rounds} ${task.mode === "async" ? "versions published" : "rounds committed"}`));
  section.querySelector(".reason").textContent = task.reason || "";
  section.querySelector(".now").replaceChildren(renderCurrent(task.current));
  // Federated evaluation: accuracy on the devices' own data, and how unevenly it is spread.
  section.querySelector(".evaluations").replaceChildren(...(task.evaluations || [])
    .filter((e) => e.metrics && e.metrics.eval_accuracy_p50 !== undefined).map((e) =>
      el("div", {"data-evaluation": String(e.round)}, `evaluation of round ${e.round} on ${e.metrics.eval_devices} ` +
        `devices: accuracy ${fmt(e.metrics.eval_accuracy)}; per device p10 ${fmt(e.metrics.eval_accuracy_p10)}, ` +
        `p50 ${fmt(e.metrics.eval_accuracy_p50)}, p90 ${fmt(e.metrics.eval_accuracy_p90)}`)));
  updatePlots(task, section.querySelector(".plots"));
  const recent = task.history.slice(-8).reverse();
  section.querySelector(".recent").replaceChildren(
    el("tr", {}, ...["round", "state", "reports", "examples", "accuracy", "loss", "s"].map((h) => el("th", {}, h)),
      el("th", {class: "text"}, "reason")),
    ...recent.map((r) => el("tr", {class: r.state === "failed" ? "failed" : ""},
      el("td", {}, String(r.round)), el("td", {}, r.state), el("td", {}, String(r.reports)),
      el("td", {}, String(r.examples)), el("td", {}, fmt(r.eval_accuracy)), el("td", {}, fmt(r.train_loss)),
      el("td", {}, fmt(r.duration_s, r.duration_s < 10 ? 2 : 1)), el("td", {class: "text"}, r.reason || ""))));
}

async function refresh() {
  const banner = document.getElementById("banner");
  try {
    const response = await fetch("/v1/status", {cache: "no-store"});
    if (!response.ok) throw new Error(`GET /v1/status: HTTP ${response.status}`);
    const status = await response.json();
    renderPopulations(status.populations);
    renderDisk(status.disk);
    renderObjects(status.objects);
    renderReleases(status.releases);
    if (status.tasks.length) {
      const placeholder = document.querySelector("#tasks > p");
      if (placeholder) placeholder.remove();
    }
    status.tasks.forEach(renderTask);
    banner.style.display = "none";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    banner.textContent = `cannot reach the coordinator (${err.message}); retrying`;
    banner.style.display = "block";
  }
  setTimeout(refresh, POLL_MS);
}

refresh();
