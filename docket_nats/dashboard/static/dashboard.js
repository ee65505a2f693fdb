// docket-nats dashboard: confirms actions, and keeps the overview live from the
// server's event stream. Every value is placed with textContent, never as HTML.
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

const source = document.body.getAttribute("data-events");
if (source) {
  const root = source.slice(0, -"/events".length);
  const events = new EventSource(source);
  events.onmessage = (message) => {
    const summary = JSON.parse(message.data);
    if (summary.counts) show(summary, root);
  };
}
