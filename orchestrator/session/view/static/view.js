// The live view page: draws the sections the server sends over the websocket
// and posts the operator's buttons. A reload or a second tab gets every
// section again from the server, which keeps the whole view.
"use strict";

const view = {};
const layout = (title, x, y) => ({
  title: { text: title, font: { size: 12 }, x: 0.02, y: 0.98, yanchor: "top" },
  margin: { l: 50, r: 10, t: 26, b: 78 },
  xaxis: { title: { text: x, standoff: 2 } }, yaxis: { title: { text: y } }, showlegend: true,
  legend: { orientation: "h", x: 0, y: -0.32, yanchor: "top", font: { size: 11 } },
});
const plotConfig = { displayModeBar: false, responsive: true };
const $ = (id) => document.getElementById(id);
const text = (value, digits = 1) =>
  value === null || value === undefined ? "—" : (typeof value === "number" ? value.toFixed(digits) : String(value));

function cell(row, value, cls) {
  const td = row.insertCell(); td.textContent = value; if (cls) td.className = cls; return td;
}

function drawState(s) {
  view.state = s;
  $("session").textContent = `${s.protocol} · sub-${s.participant} ses-${s.session} run ${s.run}`;
  $("status").textContent = s.status; $("status").dataset.status = s.status;
  const left = s.next_event === null ? null : s.next_event - s.now;
  $("next").textContent = left === null ? "" : `${s.next_event_label}: in ${Math.max(0, left).toFixed(1)} s`;
  $("pulses").textContent = `pulses delivered ${s.pulses_delivered} of ${s.pulses_planned}`;
  $("pulses").dataset.delivered = s.pulses_delivered;
  const ol = $("blocks"); ol.textContent = "";
  for (const b of s.blocks) {
    const li = document.createElement("li");
    const done = s.completed.includes(b.index), skipped = s.skipped.includes(b.index);
    li.className = skipped ? "skipped" : done ? "done" : b.index === s.current_block ? "current" : "";
    li.textContent = `${b.type} '${b.label}' · ${b.duration_s.toFixed(0)} s` + (b.pulses ? ` · ${b.pulses} pulses` : "")
      + (b.index === s.current_block && !done && !skipped ? "  ◀ now" : "");
    ol.appendChild(li);
  }
  const dev = $("device"); dev.textContent = "";
  const d = s.device || {};
  const rows = [["remote control", d.remote_control], ["armed", d.armed ? "ARMED" : "disarmed", d.armed ? "armed" : ""],
    ["ready", d.ready], ["intensity", d.intensity === undefined || d.intensity === null ? "—" : `${d.intensity} %MSO`],
    ["coil temperature", d.coil_temperature === undefined || d.coil_temperature === null ? "—" : `${d.coil_temperature.toFixed(1)} °C`]];
  for (const [name, value, cls] of rows) {
    const r = dev.insertRow(); cell(r, name); cell(r, value === true ? "yes" : value === false ? "no" : text(value), cls);
  }
  const st = $("streams"); st.textContent = "";
  for (const x of s.streams) {
    const r = st.insertRow(); cell(r, x.name);
    cell(r, `${text(x.measured_rate, 0)} / ${x.nominal_rate} Hz`);
    cell(r, `age ${text(x.age_s, 2)} s`, x.ok ? "" : "bad"); cell(r, x.ok ? "ok" : "STALE", x.ok ? "" : "bad");
  }
  const w = $("warnings"); w.textContent = "";
  for (const line of s.warnings) { const li = document.createElement("li"); li.textContent = line; w.appendChild(li); }
  if (s.task && (!view.task || view.task.done)) {
    $("task-progress").className = "";
    $("task-progress").textContent = `${s.task.task}: trial ${s.task.trial} of ${s.task.n_trials}`;
  }
  $("pause").disabled = s.status !== "running"; $("resume").disabled = !(s.status === "paused" || s.status.startsWith("pausing"));
  $("skip").disabled = s.current_block === null || s.status === "aborting" || s.status === "finished";
  $("abort").disabled = s.status === "aborting" || s.status === "finished";
}

function drawMeta(m) {
  view.meta = m;
  $("mep-none").hidden = m.has_emg;
  if (!m.has_eeg) $("evoked-note").textContent = "no EEG channels in this rig's stream";
}

function drawMep(m) {
  $("mep-count").textContent = m.amplitudes.length; $("mep-count").dataset.count = m.amplitudes.length;
  const traces = [];
  if (m.previous) traces.push({ x: m.t_ms, y: m.previous, name: "previous", line: { color: "#aab" } });
  traces.push({ x: m.t_ms, y: m.mean, name: `mean of ${m.n} ('${m.block_label}')`, line: { color: "#36c", width: 2 } });
  traces.push({ x: m.t_ms, y: m.latest, name: `latest (${m.latest_p2p_uv.toFixed(0)} µV p-p)`, line: { color: "#c22" } });
  Plotly.react("mep-plot", traces, layout("EMG around the pulse", "ms", "µV"), plotConfig);
  Plotly.react("amp-plot", [{
    x: m.amplitudes.map((a, i) => i + 1), y: m.amplitudes.map((a) => a.p2p_uv), mode: "markers+lines",
    name: "peak-to-peak", marker: { size: 5 },
  }], layout("MEP amplitude per pulse", "pulse", "µV"), plotConfig);
}

function drawHunt(h) {
  if (!h.pulses.length) return;
  $("hunt-plot").hidden = false;
  const hit = h.pulses.map((p) => p.hit === null || p.hit === undefined ? p.amplitude_uv >= 50 : p.hit);
  const traces = [{
    x: h.pulses.map((p, i) => i + 1), y: h.pulses.map((p) => p.power), mode: "markers", name: "hit / miss",
    marker: { size: 8, symbol: h.pulses.map((p) => p.rejected ? "x" : "circle"), color: hit.map((x) => x ? "#2a2" : "#c22") },
  }];
  if (h.estimate && h.estimate.estimate !== null) {
    traces.push({ x: [1, h.pulses.length], y: [h.estimate.estimate, h.estimate.estimate], mode: "lines",
      name: `estimate ${h.estimate.estimate.toFixed(1)} %MSO`, line: { dash: "dash" } });
  }
  Plotly.react("hunt-plot", traces, layout("Threshold hunt", "pulse", "%MSO"), plotConfig);
}

function drawEvoked(e) {
  $("evoked-title").textContent = `· ${e.condition} · ${e.n} pulses`;
  $("evoked-note").textContent = `artifact window blanked; ${e.left_out} pulses left out (closer than the epoch to another)`;
  const traces = e.butterfly.map((y, i) => ({ x: e.t_ms, y, name: e.channels[i], line: { width: 1 }, showlegend: false }));
  Plotly.react("evoked-plot", traces, layout("Butterfly (average so far)", "ms", "µV"), plotConfig);
  Plotly.react("gfp-plot", [{ x: e.t_ms, y: e.gfp, name: "GFP", line: { color: "#000" } }],
    { ...layout("Global field power", "ms", "µV"), showlegend: false }, plotConfig);
}

const degrees = (value) => value === null || value === undefined ? "—" : `${value.toFixed(0)}°`;

function drawPhase(p) {
  $("phase-panel").hidden = false;
  $("phase-count").textContent = p.pulses; $("phase-count").dataset.count = p.pulses;
  // One polar histogram per target, two to a row: 0° (peak) at the top,
  // growing clockwise as the report draws them.
  const n = p.targets.length, columns = Math.min(n, 2), rows = Math.ceil(n / columns);
  const height = 240 * rows, traces = [];
  const lay = { margin: { l: 20, r: 20, t: 20, b: 10 }, height, showlegend: false, annotations: [] };
  p.targets.forEach((t, i) => {
    const polar = i === 0 ? "polar" : `polar${i + 1}`;
    const column = i % columns, row = Math.floor(i / columns);
    const x = [column / columns + 0.08, (column + 1) / columns - 0.08];
    const y = [1 - (row + 1) / rows + 0.04, 1 - row / rows - 0.14 / rows];
    const top = Math.max(1, ...t.counts);
    traces.push({ type: "barpolar", subplot: polar, theta: p.bin_centers, r: t.counts, width: p.bin_deg,
      name: "pulses", marker: { color: "#36c", opacity: 0.75 }, hovertemplate: "%{theta}°: %{r} pulses<extra></extra>" });
    traces.push({ type: "scatterpolar", subplot: polar, mode: "lines", theta: [t.target_phase, t.target_phase], r: [0, top],
      name: "target", line: { color: "#000", dash: "dash" } });
    if (t.mean_deg !== null) {
      traces.push({ type: "scatterpolar", subplot: polar, mode: "lines", theta: [t.mean_deg, t.mean_deg], r: [0, top],
        name: "circular mean", line: { color: "#c22", width: 3 } });
    }
    if (t.latest_deg !== null) {
      traces.push({ type: "scatterpolar", subplot: polar, mode: "markers", theta: [t.latest_deg], r: [top],
        name: "latest", marker: { color: "#c90", size: 9, symbol: "diamond" } });
    }
    lay[polar] = { domain: { x, y }, angularaxis: { rotation: 90, direction: "clockwise", dtick: 90, tickfont: { size: 10 } },
      radialaxis: { range: [0, top], dtick: Math.max(1, Math.ceil(top / 3)), tickfont: { size: 9 } }, bargap: 0.05 };
    lay.annotations.push({ text: `target ${t.target_phase}° · n=${t.pulses} · ${degrees(t.mean_deg)} ± ${degrees(t.sd_deg)}`,
      x: (x[0] + x[1]) / 2, y: y[1] + 0.1 / rows, xref: "paper", yref: "paper", xanchor: "center", yanchor: "bottom",
      showarrow: false, font: { size: 12 } });
  });
  $("phase-plot").style.height = `${height}px`;
  Plotly.react("phase-plot", traces, lay, plotConfig);
  const table = $("phase-table"); table.textContent = "";
  const head = table.createTHead().insertRow();
  for (const h of ["target", "pulses", "mean", "SD"]) {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
  }
  const body = table.createTBody();
  for (const t of p.targets) {
    const r = body.insertRow(); r.dataset.target = t.target_phase;
    cell(r, `${t.target_phase}°`); cell(r, t.with_phase === t.pulses ? t.pulses : `${t.pulses} (${t.with_phase} with a phase)`);
    cell(r, degrees(t.mean_deg)); cell(r, degrees(t.sd_deg));
  }
}

function drawTask(t) {
  view.task = t;
  $("task-progress").className = "";
  $("task-progress").textContent = `${t.task}: trial ${t.trial} of ${t.n_trials}` + (t.done ? " (ended)" : "");
  const table = $("task-table"); table.textContent = "";
  const head = table.createTHead().insertRow();
  for (const h of ["condition", "trials", "accuracy", "median RT"]) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  const body = table.createTBody();
  for (const row of t.by_condition) {
    const r = body.insertRow(); cell(r, row.condition); cell(r, row.trials);
    cell(r, row.accuracy === null ? "—" : `${(100 * row.accuracy).toFixed(0)} %`);
    cell(r, row.median_rt_ms === null ? "—" : `${row.median_rt_ms.toFixed(0)} ms`);
  }
}

function drawLog(lines) { $("journal").textContent = lines.join("\n"); }

const draw = { meta: drawMeta, state: drawState, mep: drawMep, hunt: drawHunt, evoked: drawEvoked, phase: drawPhase, task: drawTask, log: drawLog };

function connect() {
  const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
  ws.onopen = () => { $("conn").dataset.state = "open"; $("conn").textContent = "live"; };
  ws.onmessage = (event) => {
    const sections = JSON.parse(event.data);
    for (const [name, value] of Object.entries(sections)) if (draw[name]) draw[name](value);
  };
  ws.onclose = () => { $("conn").dataset.state = "closed"; $("conn").textContent = "offline"; setTimeout(connect, 1000); };
}

async function send(action, block = null) {
  const reply = await fetch("control", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, block }) });
  if (!reply.ok) alert(`${action}: ${await reply.text()}`);
}

for (const button of document.querySelectorAll("button[data-action]")) {
  button.addEventListener("click", () => send(button.dataset.action));
}
$("skip").addEventListener("click", () => {
  const s = view.state; if (!s || s.current_block === null) return;
  const block = s.blocks.find((b) => b.index === s.current_block);
  $("confirm-text").textContent = `Skip block ${s.current_block + 1} ('${block ? block.label : ""}')?`;
  $("confirm").dataset.block = s.current_block; $("confirm").hidden = false;
});
$("confirm-yes").addEventListener("click", () => { $("confirm").hidden = true; send("skip", Number($("confirm").dataset.block)); });
$("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; });
connect();
