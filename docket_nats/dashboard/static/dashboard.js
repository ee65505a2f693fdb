// docket-nats dashboard: confirms actions, and keeps the overview and the executions
// a page shows live from the server's event stream. Every value is placed with
// textContent, never as HTML.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "-" : String(value);
  row.appendChild(td);
  return td;
}

function refill(body, items, fill) {
  if (!body) return;
  const rows = items.map((item) => {
    const row = document.createElement("tr");
    fill(row, item);
    return row;
  });
  body.replaceChildren(...rows);
}

function show(summary, root) {
  for (const [name, value] of Object.entries(summary.counts || {})) {
    document.querySelectorAll(`[data-count="${name}"]`).forEach((element) => {
      element.textContent = String(value);
    });
  }
  refill(document.getElementById("workers-body"), summary.workers || [], (row, worker) => {
    for (const value of [worker.name, worker.tasks.length, worker.concurrency,
                         worker.running, worker.last_seen]) {
      cell(row, value);
    }
  });
  refill(document.getElementById("recent-body"), summary.recent || [], (row, execution) => {
    const link = document.createElement("a");
    link.href = `${root}/execution?key=${encodeURIComponent(execution.key)}`;
    link.textContent = execution.key;
    cell(row, "").replaceChildren(link);
    cell(row, execution.function);
    const state = document.createElement("span");
    state.className = `state state-${execution.state}`;
    state.textContent = execution.state;
    cell(row, "").replaceChildren(state);
    cell(row, execution.worker);
    cell(row, execution.completed_at);
  });
  const chart = document.getElementById("chart");
  if (chart && summary.chart) {
    const peak = Math.max(0, ...summary.chart);
    const bars = summary.chart.map((value) => {
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.height = `${Math.round((100 * value) / (peak || 1))}%`;
      bar.title = `${value} tasks/s`;
      return bar;
    });
    chart.replaceChildren(...bars);
    const label = document.getElementById("chart-peak");
    if (label) label.textContent = String(peak);
  }
  document.body.setAttribute("data-live", "1");
}

const ENDED = ["completed", "failed", "cancelled"];

function badge(state) {
  const span = document.createElement("span");
  span.className = `state state-${state}`;
  span.textContent = state;
  return span;
}

function showProgress(element, progress) {
  const line = element.querySelector("p.progress");
  if (!line) return;
  line.hidden = !progress;
  if (!progress) return;
  const total = Math.max(1, progress.total);
  const bar = line.querySelector("progress");
  bar.max = progress.total;
  bar.value = progress.current;
  const share = Math.round((100 * progress.current) / total);
  line.querySelector(".progress-text").textContent =
    `${progress.current} / ${progress.total} (${share}%) ${progress.message || ""}`;
}

// The executions a page shows (elements with data-live-key), from the keys part of
// the event stream: only news newer than what the page was rendered from.
function showKeys(keys) {
  document.querySelectorAll("[data-live-key]").forEach((element) => {
    const execution = keys[element.getAttribute("data-live-key")];
    if (!execution) return;
    if (execution.revision <= Number(element.getAttribute("data-revision"))) return;
    const field = element.getAttribute("data-field");
    if (field === "state") {
      element.replaceChildren(badge(execution.state));
    } else if (field === "progress") {
      showProgress(element, execution.progress);
    } else if (field === "history") {
      refill(element.querySelector("tbody"), execution.history, (row, step) => {
        cell(row, step[0]);
        cell(row, step[1]);
      });
    } else {
      const value = execution[field];
      element.textContent = value === null || value === undefined ? "-" : String(value);
    }
    element.setAttribute("data-shown", String(execution.revision));
  });
  const facts = document.querySelector("table.facts[data-state]");
  const ended = document.getElementById("ended");
  if (facts && ended) {
    const shown = facts.querySelector('[data-field="state"] .state');
    const now = shown ? shown.textContent : "";
    ended.hidden = !(ENDED.includes(now) && now !== facts.getAttribute("data-state"));
  }
}

const source = document.body.getAttribute("data-events");
if (source) {
  const root = source.slice(0, source.lastIndexOf("/events"));
  const events = new EventSource(source);
  events.onmessage = (message) => {
    const summary = JSON.parse(message.data);
    if (summary.counts) show(summary, root);
    if (summary.keys) showKeys(summary.keys);
  };
}
