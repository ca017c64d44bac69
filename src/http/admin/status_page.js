"use strict";
(() => {
  const REFRESH_MS = 2000;
  const KEY = "tollgate.admin-token";
  const HISTORY_MS = 300000;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY);
  let timer = null;
  let renders = 0;
  let last = null;

  class Unauthorized extends Error {}

  // ---- formatting -------------------------------------------------------------------------
  const int = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const one = new Intl.NumberFormat("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  const count = (n) => (n >= 1e6 ? compact.format(n) : int.format(n));
  const rate = (r) => (r == null ? "–" : r === 0 ? "0" : r < 10 ? one.format(r) : r >= 1e5 ? compact.format(r) : int.format(r));
  const percent = (f) => (f == null ? "–" : f === 0 ? "0 %" : f < 0.001 ? "<0.1 %" : one.format(f * 100) + " %");
  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function ago(ms) {
    if (ms == null || !isFinite(ms)) return "–";
    const s = Math.max(0, ms / 1000);
    return (s < 10 ? one.format(s) + " s" : span(s)) + " ago";
  }

  // ---- DOM helpers (text only: ids, names and URLs are never parsed as HTML) ----------------
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const td = (cls, ...children) => el("td", cls, ...children);
  const badge = (kind, text) => {
    const b = el("span", "badge " + kind, text || kind);
    b.dataset.kind = kind;
    return b;
  };
  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  const svg = (tag, attrs) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };

  // ---- the token --------------------------------------------------------------------------
  function askToken(message) {
    clearTimeout(timer);
    $("dash").hidden = true;
    $("notice").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    setLive("connecting", "token needed");
    $("token").focus();
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    $("login").hidden = true;
    refresh();
  });

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers, cache: "no-store" });
    if (r.status === 401) throw new Unauthorized(path);
    if (!r.ok) throw new Error(path + " answered " + r.status);
    return r.json();
  }

  function setLive(state, text) {
    $("live").dataset.live = state;
    $("live-text").textContent = text;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      // The instances are a bonus: the page works without them.
      const [status, cluster] = await Promise.all([
        api("/status"),
        api("/cluster").catch((e) => (e instanceof Unauthorized ? Promise.reject(e) : null)),
      ]);
      render(status, cluster);
      setLive("ok", "updated " + new Date(status.now_ms).toLocaleTimeString("en-GB"));
    } catch (e) {
      if (e instanceof Unauthorized) {
        const refused = token != null;
        token = null;
        sessionStorage.removeItem(KEY);
        askToken(refused ? "That token was refused." : null);
        return;
      }
      setLive("down", "gateway unreachable, retrying");
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // ---- rendering --------------------------------------------------------------------------
  function render(s, cluster) {
    $("login").hidden = true;
    $("dash").hidden = false;
    $("instance").textContent = "instance " + s.instance_id;
    $("uptime").textContent = "up " + span(s.uptime_s);
    renderNotice(s);
    renderKpis(s);
    renderChart(s);
    renderBackends(s);
    renderClients(s);
    renderInstances(cluster);
    last = s;
    renders += 1;
    document.body.dataset.renders = String(renders);
  }

  function renderNotice(s) {
    const notes = [];
    if (s.counted === "backend_requests") {
      notes.push("Metrics are off (TOLLGATE_METRICS=false): requests are those sent to backends, " +
        "retries included, with no status classes; the gateway's own answers (429, 502…) are not counted.");
    }
    if (s.pool.panic) notes.push("Panic mode: too few backends are healthy, traffic goes to all of them.");
    $("notice").hidden = notes.length === 0;
    $("notice").textContent = notes.join(" ");
  }

  function renderKpis(s) {
    const t = s.totals;
    $("k-rps").textContent = rate(t.per_sec);
    $("k-rps-hint").textContent = s.window_s > 0 ? "over the last " + Math.round(s.window_s) + " s" : "measuring…";
    const refused = $("k-refused");
    refused.textContent = t.refused == null ? "off" : rate(t.refused_per_sec);
    refused.classList.toggle("bad", (t.refused_per_sec || 0) > 0);
    $("k-refused-hint").textContent = t.refused == null ? "rate limiting is off" : count(t.refused) + " since start";
    $("k-total").textContent = count(t.requests);
    const bar = $("k-classes");
    bar.hidden = !t.by_class;
    if (t.by_class) {
      const total = Object.values(t.by_class).reduce((a, b) => a + b, 0);
      const parts = [];
      for (const [cls, n] of Object.entries(t.by_class)) {
        if (!n) continue;
        const p = el("span", "c" + cls);
        p.style.width = ((n / total) * 100).toFixed(2) + "%";
        p.title = cls + ": " + int.format(n);
        parts.push(p);
      }
      bar.replaceChildren(...parts);
    }
    $("k-total-hint").textContent = t.by_class
      ? Object.entries(t.by_class).filter(([, n]) => n > 0).map(([c, n]) => count(n) + " " + c).join(" · ")
      : "sent to backends";
    const up = s.backends.filter((b) => b.state === "healthy").length;
    const k = $("k-up");
    k.textContent = up + " / " + s.backends.length;
    k.classList.toggle("bad", up < s.backends.length);
    k.classList.toggle("ok", up === s.backends.length && up > 0);
    const down = s.backends.length - up;
    $("k-up-hint").textContent = down ? down + " not taking traffic" : "all taking traffic";
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function renderChart(s) {
    const box = $("chart");
    const W = Math.max(320, box.clientWidth), H = 190;
    const L = 46, R = 8, T = 8, B = 22;
    const now = s.now_ms, from = now - HISTORY_MS;
    const pts = s.history.points.filter((p) => p.t >= from);
    const max = niceMax(Math.max(0, ...pts.map((p) => Math.max(p.rps, p.refused_ps))));
    const x = (t) => L + ((t - from) / HISTORY_MS) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Requests per second" });
    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f);
      root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: yy, y2: yy }));
      const label = svg("text", { class: "axis", x: L - 8, y: yy + 4, "text-anchor": "end" });
      label.textContent = rate(max * f);
      root.append(label);
    }
    for (let m = 5; m >= 0; m--) {
      const label = svg("text", { class: "axis", x: x(now - m * 60000), y: H - 4, "text-anchor": m === 5 ? "start" : m === 0 ? "end" : "middle" });
      label.textContent = m === 0 ? "now" : "−" + m + " min";
      root.append(label);
    }
    if (pts.length < 2) {
      const t = svg("text", { class: "empty", x: (L + W) / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = "collecting samples…";
      root.append(t);
    } else {
      const line = (key) => pts.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join("");
      const base = y(0).toFixed(1);
      root.append(svg("path", { class: "area", d: line("rps") + "L" + x(pts[pts.length - 1].t).toFixed(1) + "," + base + "L" + x(pts[0].t).toFixed(1) + "," + base + "Z" }));
      root.append(svg("path", { class: "rps", d: line("rps") }));
      if (pts.some((p) => p.refused_ps > 0)) root.append(svg("path", { class: "refused", d: line("refused_ps") }));
    }
    box.replaceChildren(root);
  }

  function lastCheck(c, now) {
    if (!c) return el("span", "muted", "not checked yet");
    const when = ago(now - Date.parse(c.at));
    if (c.ok) return el("span", "check-ok", "✓ " + (c.status || "") + " · " + c.duration_ms + " ms · " + when);
    const e = el("span", "check-bad", "✗ " + (c.error || "HTTP " + c.status) + " · " + when);
    e.title = c.error || "";
    return e;
  }

  function renderBackends(s) {
    $("pool-info").textContent = s.pool.strategy ? "strategy " + s.pool.strategy.replace(/_/g, " ") : "";
    fill($("backends").tBodies[0], s.backends.map((b) => {
      const tr = el("tr", null,
        td(null, badge(b.state)),
        td(null, el("div", "id", b.id), el("div", "sub", b.url)),
        td("num", int.format(b.in_flight)),
        td("num", rate(b.rps)),
        td("num" + ((b.error_rate || 0) > 0 ? " bad-text" : ""), percent(b.error_rate)),
        td("num", count(b.requests)),
        td(null, lastCheck(b.last_check, s.now_ms)));
      tr.dataset.url = b.url;
      tr.dataset.state = b.state;
      return tr;
    }));
  }

  function limitKind(c) {
    if (!c.enabled) return ["disabled", "disabled"];
    if (c.limited) return c.enforce ? ["limited", "limited"] : ["shadow", "would limit"];
    return ["ok", c.enforce ? "ok" : "ok · shadow"];
  }

  function renderClients(s) {
    const card = $("clients-card");
    card.hidden = s.clients == null;
    if (s.clients == null) return;
    const l = s.limits;
    $("clients-info").textContent = int.format(l.registered) + " registered · limits " + l.mode +
      (l.mode === "local" ? "" : " · " + l.live_instances + " live instance" + (l.live_instances === 1 ? "" : "s")) +
      " · busiest since start";
    $("clients-empty").hidden = s.clients.length > 0;
    fill($("clients").tBodies[0], s.clients.map((c) => {
      const [kind, text] = limitKind(c);
      const share = c.capacity ? Math.min(1, c.tokens / c.capacity) : 0;
      const bar = el("div", "bar" + (c.tokens < 1 ? " low" : share < 0.25 ? " mid" : ""), el("span"));
      bar.firstChild.style.width = (share * 100).toFixed(1) + "%";
      const who = el("td", null, el("div", "id", c.client_id));
      if (c.name) who.append(el("div", "sub", c.name));
      const tr = el("tr", null,
        td(null, badge(kind, text)),
        who,
        td(null, el("div", "tokens", bar, el("span", "mono", int.format(c.tokens) + " / " + int.format(c.capacity)))),
        td("num", rate(c.admitted_per_sec)),
        td("num" + ((c.refused_per_sec || 0) > 0 ? " bad-text" : ""), rate(c.refused_per_sec)),
        td("num", count(c.admitted)),
        td("num", count(c.refused)));
      tr.dataset.client = c.client_id;
      tr.dataset.limited = String(c.limited);
      return tr;
    }));
  }

  function renderInstances(cluster) {
    const card = $("instances-card");
    card.hidden = !cluster;
    if (!cluster) return;
    const live = cluster.instances.filter((i) => i.alive).length;
    $("cluster-info").textContent = live + " live · database " + cluster.database.replace(/_/g, " ");
    fill($("instances").tBodies[0], cluster.instances.map((i) => {
      const id = el("td", null, el("span", "id mono", i.instance_id));
      if (i.self) id.append(el("span", "muted", " (this one)"));
      const tr = el("tr", null,
        td(null, badge(i.alive ? "live" : "dead")),
        id,
        td(null, i.host),
        td("mono", i.proxy_addr),
        td("mono", i.admin_addr),
        td(null, i.version),
        td("num", int.format(i.applied_version)),
        td(null, ago(i.seconds_since_heartbeat * 1000)));
      tr.dataset.instance = i.instance_id;
      return tr;
    }));
  }

  window.addEventListener("resize", () => { if (last && !$("dash").hidden) renderChart(last); });
  refresh();
})();
