// sekisho dashboard: reads the admin API with the admin key kept in this tab's session storage,
// draws the monitor's samples with uPlot, flips runtime switches, and decides held calls.
// Everything shown that came from the gateway (upstream names, alert texts, recommendations,
// held calls' arguments) is set as text, never as HTML.
"use strict";
(function () {
  const KEY = "sekisho.adminKey";
  const POLL_MS = 5000;
  const $ = (id) => document.getElementById(id);
  const state = { period: "1h", timer: null, charts: {}, busy: false, lastUpdate: 0 };
  // For tests and the curious: the charts and the time of the last successful refresh.
  window.sekishoDashboard = state;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c);
    return node;
  }

  class Unauthorized extends Error {}

  async function api(path, method) {
    const key = sessionStorage.getItem(KEY) || "";
    const res = await fetch(path, { method: method || "GET", headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    if (res.status === 401 || res.status === 403) throw new Unauthorized(res.status === 401 ? "the key is not known" : "the key is not an admin key");
    const body = await res.json().catch(() => null);
    return { status: res.status, body };
  }

  // ---- formatting ----
  const num = (v, d) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %");
  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms");
  const mib = (b) => (b === null || b === undefined ? "–" : (b / 1048576).toFixed(0) + " MiB");
  const usd = (v) => (v === null || v === undefined ? "–" : "$" + Number(v).toFixed(v < 1 ? 4 : 2));
  const when = (msEpoch) => (msEpoch ? new Date(msEpoch).toLocaleString() : "");

  // ---- charts ----
  const SERIES = {
    traffic: [["requests/s", "#3b5bdb", (s) => s.requests_per_sec]],
    latency: [
      ["p50", "#2f9e44", (s) => s.latency && s.latency.p50_ms],
      ["p95", "#f08c00", (s) => s.latency && s.latency.p95_ms],
      ["p99", "#e03131", (s) => s.latency && s.latency.p99_ms],
    ],
    rates: [
      ["errors %", "#e03131", (s) => s.error_rate * 100],
      ["tool errors %", "#f08c00", (s) => (s.calls ? (s.tool_errors / s.calls) * 100 : 0)],
      ["cache hits %", "#2f9e44", (s) => (s.cache_hit_rate === null || s.cache_hit_rate === undefined ? null : s.cache_hit_rate * 100)],
    ],
    load: [
      ["in flight", "#3b5bdb", (s) => s.in_flight],
      ["queued", "#f08c00", (s) => s.queued],
      ["shed", "#e03131", (s) => s.shed],
      ["rate-limited", "#9c36b5", (s) => s.rate_limited],
    ],
    memory: [
      ["gateway", "#3b5bdb", (s) => (s.gateway ? s.gateway.rss_bytes / 1048576 : null)],
      ["children", "#0c8599", (s) => (s.children || []).reduce((a, c) => a + c.rss_bytes, 0) / 1048576],
    ],
    cost: [
      ["$/h", "#e8590c", (s) => (s.cost_per_hour === undefined ? null : s.cost_per_hour)],
      ["budget $/h", "#868e96", (s) => (state.budget === undefined ? null : state.budget)],
    ],
  };

  function chartWidth(fig) {
    return Math.max(240, fig.clientWidth - 24);
  }

  function drawChart(name, samples) {
    const fig = $("chart-" + name);
    const xs = samples.map((s) => s.timestamp_ms / 1000);
    const data = [xs, ...SERIES[name].map(([, , pick]) => samples.map((s) => { const v = pick(s); return v === undefined ? null : v; }))];
    fig.setAttribute("data-points", String(xs.length));
    let chart = state.charts[name];
    if (!chart) {
      const opts = {
        width: chartWidth(fig),
        height: 180,
        scales: { x: { time: true } },
        legend: { live: true },
        series: [{}, ...SERIES[name].map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: false, points: { show: xs.length < 3 } }))],
        axes: [{}, { size: 52 }],
      };
      chart = new uPlot(opts, data, fig);
      state.charts[name] = chart;
    } else {
      chart.setData(data);
    }
  }

  function resize() {
    for (const [name, chart] of Object.entries(state.charts)) chart.setSize({ width: chartWidth($("chart-" + name)), height: 180 });
  }

  // ---- panels ----
  function tile(label, value, sub, level) {
    return el("div", { class: "tile", "data-level": level || "ok" }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value }), el("div", { class: "sub", text: sub || "" }));
  }

  function drawTiles(monitor, alerts) {
    const s = monitor.latest || {};
    const sum = monitor.summary || {};
    const lat = s.latency || {};
    const firing = alerts ? alerts.firing : null;
    const tiles = [
      tile("Requests/s", num(s.requests_per_sec, 2), (sum.calls || 0) + " calls in " + state.period),
      tile("p95 latency", ms(lat.p95_ms), "p99 " + ms(lat.p99_ms), lat.p95_ms >= 5000 ? "bad" : lat.p95_ms >= 3000 ? "warn" : "ok"),
      tile("Error rate", pct(s.error_rate), (s.errors || 0) + " errors", s.error_rate >= 0.05 ? "bad" : s.error_rate >= 0.02 ? "warn" : "ok"),
      tile("Cache hit rate", pct(s.cache_hit_rate), "coalesced " + pct(s.coalesced_share), s.cache_hit_rate !== null && s.cache_hit_rate < 0.6 ? "warn" : "ok"),
      tile("In flight / queued", (s.in_flight ?? "–") + " / " + (s.queued ?? "–"), "shed " + (s.shed ?? 0) + ", limited " + (s.rate_limited ?? 0), s.queued > 10 ? "bad" : "ok"),
      tile("Sessions", String(s.sessions ?? "–"), (s.streams ?? 0) + " streams"),
      tile("Upstreams", (s.upstreams_up ?? "–") + " up", (s.upstreams_down ?? 0) + " down, " + (s.breakers_open ?? 0) + " breakers open", s.upstreams_down > 0 ? "bad" : "ok"),
      tile("Alerts firing", firing === null ? "–" : String(firing), alerts ? alerts.rules + " rules" : "alerts off", firing > 0 ? "bad" : "ok"),
      tile("Gateway RSS", mib(s.gateway && s.gateway.rss_bytes), s.gateway ? "CPU " + num(s.gateway.cpu_percent, 1) + " %" : ""),
      tile("Cost", s.cost_per_hour === undefined ? "–" : usd(s.cost_per_hour) + "/h", state.budget === undefined ? "no budget" : "budget " + usd(state.budget) + "/h",
        state.budget && s.cost_per_hour >= state.budget ? "bad" : state.budget && s.cost_per_hour >= 0.8 * state.budget ? "warn" : "ok"),
    ];
    $("tiles").replaceChildren(...tiles);
  }

  function drawUpstreams(monitor) {
    const s = monitor.latest || {};
    const byName = new Map((s.by_upstream || []).map((b) => [b.name, b]));
    const rows = (s.health || []).map((h) => {
      const b = byName.get(h.name) || {};
      const st = h.down > 0 ? (h.up > 0 ? "partly down" : "down") : "up";
      return el("tr", {},
        el("td", { text: h.name }),
        el("td", { class: "state", "data-state": st === "up" ? "up" : "down", text: st + (h.up + h.down > 1 ? " (" + h.up + "/" + (h.up + h.down) + ")" : "") }),
        el("td", { text: h.breakers_open > 0 ? h.breakers_open + " open" : "closed" }),
        el("td", { text: String(b.calls ?? 0) }),
        el("td", { text: String(b.errors ?? 0) }),
        el("td", { text: num(b.p95_ms, 0) }));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 6, class: "muted", text: "No sample yet: the monitor samples every " + Math.round((monitor.interval_ms || 30000) / 1000) + " s." })));
    $("upstreams").tBodies[0].replaceChildren(...rows);
  }

  function drawAlerts(alerts) {
    const list = $("alerts");
    if (!alerts) return list.replaceChildren(el("li", { class: "empty", text: "Alerts are off." }));
    const items = (alerts.active || []).map((a) => el("li", { "data-state": a.state },
      el("span", { class: "sev", "data-sev": a.severity, text: a.severity }),
      el("strong", { text: a.title }), " ", el("span", { class: "muted", text: a.state }),
      el("div", { class: "detail", text: a.description + " — " + a.metric + " " + num(a.current_value, 3) + " vs " + num(a.threshold, 3) + (a.scope ? " (" + a.scope + ")" : "") + ", since " + when(a.fired_at || a.timestamp) })));
    list.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "Nothing firing or pending." })]));
  }

  function drawRecommendations(recs) {
    const list = $("recommendations");
    if (recs === null) return list.replaceChildren(el("li", { class: "empty", text: "Recommendations are not available on this gateway." }));
    const items = recs.map((r) => el("li", {},
      el("span", { class: "sev", "data-sev": r.priority, text: r.priority }),
      el("strong", { text: r.title }), " ", el("span", { class: "muted", text: r.category }),
      el("div", { class: "detail", text: r.description + (r.estimated_improvement ? " Estimated: " + r.estimated_improvement + "." : "") }),
      el("div", { class: "detail", text: (r.action_items || []).join(" · ") })));
    list.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No recommendation: nothing measured calls for a change." })]));
  }

  function drawSwitches(sw) {
    $("switches-reach").textContent = sw.fleet_wide ? "Applied to every replica (Redis)." : "Applied to this replica.";
    const items = Object.entries(sw.switches || {}).map(([layer, s]) => {
      const button = el("button", { type: "button", "data-on": String(s.on), "data-layer": layer, text: s.on ? "on" : "off" });
      button.setAttribute("aria-label", "Turn " + layer + (s.on ? " off" : " on"));
      button.addEventListener("click", () => flip(layer, !s.on, button));
      return el("li", { "data-layer": layer }, el("span", { class: "name", text: layer }), el("span", { class: "by", text: s.by ? "by " + s.by + " " + (s.at || "") : "" }), button);
    });
    $("switches").replaceChildren(...items);
  }

  function drawApprovals(held) {
    const items = ((held && held.pending) || []).map((p) => {
      const approve = el("button", { type: "button", "data-id": p.id, text: "approve" });
      const deny = el("button", { type: "button", "data-id": p.id, text: "deny" });
      approve.addEventListener("click", () => decide(p.id, "approve", approve));
      deny.addEventListener("click", () => decide(p.id, "deny", deny));
      return el("li", { "data-id": p.id },
        el("strong", { text: p.tool }), " ", el("span", { class: "muted", text: "by " + p.caller + " · " + p.reason + " · " + Math.round(p.expires_in_ms / 1000) + " s left" }),
        el("div", { class: "detail", text: JSON.stringify(p.arguments) }), approve, deny);
    });
    $("approvals").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No call awaits approval." })]));
  }

  async function decide(id, verb, button) {
    button.disabled = true;
    try {
      await api("/admin/approvals/" + encodeURIComponent(id) + "/" + verb, "POST");
    } catch (e) {
      if (e instanceof Unauthorized) return signOut(e.message);
    }
    refresh();
  }

  function drawReady(ready) {
    const pill = $("ready");
    if (!ready) { pill.dataset.state = "unknown"; pill.textContent = "unreachable"; return; }
    const degraded = (ready.degraded || []).length > 0;
    pill.dataset.state = !ready.ready ? "unready" : degraded || (ready.switched_off || []).length ? "degraded" : "ready";
    let text = ready.ready ? (ready.draining ? "draining" : "ready") : "not ready";
    if (degraded) text += " · degraded: " + ready.degraded.join(", ");
    if ((ready.switched_off || []).length) text += " · off: " + ready.switched_off.join(", ");
    pill.textContent = text;
  }

  async function flip(layer, on, button) {
    button.disabled = true;
    try {
      await api("/admin/switches/" + encodeURIComponent(layer) + "/" + (on ? "on" : "off"), "POST");
    } catch (e) {
      if (e instanceof Unauthorized) return signOut(e.message);
    }
    button.disabled = false;
    refresh();
  }

  // ---- refresh loop ----
  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    try {
      const [monitor, alerts, sw, ready, recs, held] = await Promise.all([
        api("/admin/monitor?period=" + state.period),
        api("/admin/alerts"),
        api("/admin/switches"),
        api("/readyz"),
        api("/admin/recommendations?period=" + state.period).catch((e) => { if (e instanceof Unauthorized) throw e; return { status: 0 }; }),
        api("/admin/approvals"),
      ]);
      // The gateway-wide budget, as the newest sample saw it ([budgets.gateway]).
      const latest = (monitor.status === 200 && monitor.body.latest) || {};
      const gateway = (latest.budgets || []).find((b) => b.name === "gateway");
      state.budget = gateway ? gateway.per_hour : undefined;
      if (monitor.status === 200) {
        const samples = monitor.body.samples || [];
        for (const name of Object.keys(SERIES)) drawChart(name, samples);
        drawTiles(monitor.body, alerts.status === 200 ? alerts.body : null);
        drawUpstreams(monitor.body);
      } else {
        $("tiles").replaceChildren(el("div", { class: "tile", text: (monitor.body && monitor.body.error) || "The monitor is off." }));
      }
      drawAlerts(alerts.status === 200 ? alerts.body : null);
      drawSwitches(sw.body || {});
      drawApprovals(held.status === 200 ? held.body : null);
      drawReady(ready.body);
      drawRecommendations(recs.status === 200 && recs.body ? recs.body.recommendations || recs.body : null);
      state.lastUpdate = Date.now();
      $("stale").hidden = true;
    } catch (e) {
      if (e instanceof Unauthorized) return signOut(e.message);
      $("stale").hidden = false;
      $("stale").textContent = "The gateway did not answer (" + e.message + "); showing data from " + (state.lastUpdate ? new Date(state.lastUpdate).toLocaleTimeString() : "never") + ".";
      drawReady(null);
    } finally {
      state.busy = false;
    }
  }

  function show(signedIn) {
    $("signin").hidden = signedIn;
    $("board").hidden = !signedIn;
    $("controls").hidden = !signedIn;
    clearInterval(state.timer);
    if (signedIn) {
      refresh();
      state.timer = setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
    }
  }

  function signOut(reason) {
    sessionStorage.removeItem(KEY);
    $("signin-error").textContent = reason ? "Refused: " + reason + "." : "";
    show(false);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = "";
      show(true);
    });
    $("signout").addEventListener("click", () => signOut());
    for (const b of document.querySelectorAll("[data-period]")) {
      b.addEventListener("click", () => {
        state.period = b.dataset.period;
        for (const o of document.querySelectorAll("[data-period]")) o.setAttribute("aria-pressed", String(o === b));
        refresh();
      });
    }
    window.addEventListener("resize", resize);
    $("replica").textContent = location.host;
    show(Boolean(sessionStorage.getItem(KEY)));
  });
})();
