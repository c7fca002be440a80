// The status page: polls /api/status and draws it. Text goes in through textContent only.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "roamgw-token";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function rate(bps) {
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (bps >= 1000 && i < units.length - 1) { bps /= 1000; i++; }
  return bps.toFixed(i ? 1 : 0) + " " + units[i];
}

function age(secs) {
  if (secs === null || secs === undefined) return "never";
  if (secs < 120) return secs + " s ago";
  if (secs < 7200) return Math.round(secs / 60) + " min ago";
  return Math.round(secs / 3600) + " h ago";
}

function badge(text, kind) {
  return el("span", text, "badge " + kind);
}

function drawBadges(s) {
  const box = document.getElementById("badges");
  box.replaceChildren(
    badge(s.up ? "up" : "down", s.up ? "ok" : "bad"),
    badge(s.in_sync ? "in sync" : "drift", s.in_sync ? "ok" : "warn"),
    badge(s.backend || "?", ""),
    badge(s.public_ip || "no public IP known", ""),
  );
  document.getElementById("footer").textContent =
    "roamgw " + s.version + " · refreshed " + new Date().toLocaleTimeString();
}

function drawRoamers(s) {
  const body = document.querySelector("#roamers tbody");
  body.replaceChildren(...s.roamers.map((r) => {
    const health = el("td");
    health.appendChild(badge(r.health, { up: "ok", stale: "warn", never: "bad" }[r.health] || ""));
    const tr = row([el("td", r.name), health, r.address, r.endpoint || "—", age(r.handshake_secs),
      bytes(r.rx_bytes), bytes(r.tx_bytes)]);
    tr.dataset.name = r.name;
    tr.dataset.health = r.health;
    return tr;
  }));
}

function drawForwards(s) {
  const body = document.querySelector("#forwards tbody");
  const token = sessionStorage.getItem(TOKEN_KEY);
  body.replaceChildren(...s.forwards.map((f) => {
    const c = f.counters;
    const actions = el("td");
    if (s.changes_allowed && token) {
      const remove = el("button", "Remove", "remove");
      remove.dataset.spec = f.spec;
      remove.addEventListener("click", () => change("remove", { spec: f.spec }));
      actions.appendChild(remove);
    }
    const tr = row([f.spec, f.public, f.to + " (" + f.local + ")",
      f.allow_from.length ? f.allow_from.join(", ") : "anyone", f.client_ip,
      c ? c.in_packets + " pkts, " + bytes(c.in_bytes) : "not counted",
      c ? c.back_packets + " pkts, " + bytes(c.back_bytes) : "not counted", actions]);
    tr.dataset.spec = f.spec;
    return tr;
  }));
  document.getElementById("add").hidden = !(s.changes_allowed && token);
  document.getElementById("changes-off").hidden = s.changes_allowed;
  document.getElementById("token-form").hidden = !s.changes_allowed;
}

function drawChart(s) {
  const points = s.throughput;
  const width = 720, height = 200;
  const end = points.length ? points[points.length - 1].at : 0;
  // The hour once there is an hour of samples; until then what there is (at least a minute).
  const span = Math.min(3600, Math.max(60, points.length ? end - points[0].at : 60));
  const max = Math.max(1, ...points.map((p) => Math.max(p.to_roamers_bps, p.from_roamers_bps)));
  const line = (key) => points.map((p) => {
    const x = width - ((end - p.at) / span) * width;
    const y = height - (p[key] / max) * (height - 10);
    return x.toFixed(1) + "," + y.toFixed(1);
  }).join(" ");
  document.getElementById("to-roamers").setAttribute("points", line("to_roamers_bps"));
  document.getElementById("from-roamers").setAttribute("points", line("from_roamers_bps"));
  const chart = document.getElementById("chart");
  chart.dataset.max = String(max);
  chart.dataset.samples = String(points.length);
  document.getElementById("chart-start").textContent = "−" + Math.round(span / 60) + " min";
  const last = points.length ? points[points.length - 1] : null;
  document.getElementById("chart-scale").textContent = last
    ? "· top line " + rate(max) + ", middle " + rate(max / 2) + " · now " + rate(last.to_roamers_bps) +
      " to, " + rate(last.from_roamers_bps) + " from the roamers (a sample every " + s.sample_secs + " s)"
    : "· first sample in " + s.sample_secs + " s";
}

function drawEvents(s) {
  const list = document.getElementById("events");
  list.replaceChildren(...s.events.map((e) => {
    const li = el("li");
    li.dataset.kind = e.kind;
    li.appendChild(el("time", new Date(e.at * 1000).toLocaleTimeString()));
    li.appendChild(el("span", e.text));
    return li;
  }));
  if (!s.events.length) list.replaceChildren(el("li", "nothing yet"));
}

function say(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

async function refresh() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const s = await response.json();
    drawBadges(s);
    drawRoamers(s);
    drawForwards(s);
    drawChart(s);
    drawEvents(s);
  } catch (e) {
    say("cannot reach roamgw run: " + e.message, true);
  }
}

async function change(what, body) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  try {
    const response = await fetch("/api/forwards/" + what, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    say(answer.summary || answer.error || "HTTP " + response.status, !response.ok);
  } catch (e) {
    say("the change did not reach roamgw run: " + e.message, true);
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    say("token kept for this tab", false);
    refresh();
  });
  document.getElementById("add").addEventListener("submit", (event) => {
    event.preventDefault();
    const allow = document.getElementById("add-allow").value.split(",").map((s) => s.trim()).filter(Boolean);
    const to = document.getElementById("add-to").value.trim();
    change("add", { spec: document.getElementById("add-spec").value.trim(), to: to || null, allow_from: allow });
  });
  refresh();
  setInterval(refresh, POLL_MS);
});
