// The console page: renders the snapshots the server sends, with DOM
// methods and textContent only; every name on the page comes from the
// network, so none is ever parsed as HTML.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var MAX_POINTS = 300;
  var hist = new Map(); // row key -> {t: [], failing: [], refused: [], retries: [], in_flight: []}
  var SERIES = ["failing", "refused", "retries", "in_flight"];
  var interval = 1000;
  var updates = 0;
  var pollTimer = null;
  var source = null;
  var sseErrors = 0;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }

  function fmtRate(v) {
    v = num(v);
    if (v === 0) { return "0"; }
    if (v < 10) { return v.toFixed(1); }
    return Math.round(v).toString();
  }

  function fmtPct(v) { return num(v).toFixed(v >= 10 || v === 0 ? 0 : 1) + "%"; }

  function fmtDur(ms) {
    ms = num(ms);
    if (ms < 1000) { return Math.round(ms) + "ms"; }
    var s = ms / 1000;
    if (s < 60) { return s.toFixed(s < 10 ? 1 : 0) + "s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + "m" + Math.floor(s % 60) + "s"; }
    return Math.floor(m / 60) + "h" + (m % 60) + "m";
  }

  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function setLink(mode, text) {
    var l = $("link");
    l.setAttribute("data-link", mode);
    l.textContent = text;
  }

  function rowKey(pl, row) { return pl.kind + "\u0000" + pl.name + "\u0000" + row.id; }

  // absorb updates the local histories: a snapshot with histories
  // replaces them, a later one adds each row's newest sample.
  function absorb(snap) {
    var seen = new Set();
    (snap.pipelines || []).forEach(function (pl) {
      (pl.rows || []).forEach(function (row) {
        var k = rowKey(pl, row);
        seen.add(k);
        if (row.history) {
          var h = { t: (row.history.t || []).slice(-MAX_POINTS) };
          SERIES.forEach(function (s) { h[s] = (row.history[s] || []).slice(-MAX_POINTS); });
          hist.set(k, h);
          return;
        }
        var cur = hist.get(k);
        if (!cur) {
          cur = { t: [] };
          SERIES.forEach(function (s) { cur[s] = []; });
          hist.set(k, cur);
        }
        var last = row.last || {};
        var n = cur.t.length;
        // A sample taken early, between two regular ones, replaces the
        // newest point instead of adding one.
        if (n > 0 && num(last.t) - cur.t[n - 1] < interval / 2) {
          if (num(last.t) >= cur.t[n - 1]) {
            cur.t[n - 1] = num(last.t);
            SERIES.forEach(function (s) { cur[s][n - 1] = num(last[s]); });
          }
          return;
        }
        cur.t.push(num(last.t));
        SERIES.forEach(function (s) { cur[s].push(num(last[s])); });
        if (cur.t.length > MAX_POINTS) {
          cur.t.shift();
          SERIES.forEach(function (s) { cur[s].shift(); });
        }
      });
    });
    hist.forEach(function (_, k) { if (!seen.has(k)) { hist.delete(k); } });
  }

  function sparkline(h) {
    var w = 160, ht = 30;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(ht));
    svg.setAttribute("viewBox", "0 0 " + w + " " + ht);
    if (!h || h.t.length < 2) { return svg; }
    var n = h.t.length;
    // At least a minute of samples across the width: a short history
    // fills the right-hand part.
    var span = Math.max(n, Math.min(MAX_POINTS, 60));
    SERIES.forEach(function (s) {
      var vals = h[s];
      var top = 0;
      for (var i = 0; i < vals.length; i++) { top = Math.max(top, num(vals[i])); }
      if (s === "failing") { top = Math.max(top, 100); }
      if (top <= 0) { return; }
      var pts = [];
      for (var j = 0; j < vals.length; j++) {
        var x = (span - n + j) * w / (span - 1);
        var y = ht - 1 - num(vals[j]) / top * (ht - 2);
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
      }
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", s);
      line.setAttribute("points", pts.join(" "));
      svg.appendChild(line);
    });
    return svg;
  }

  function cell(tr, cls, content) {
    var td = el("td", cls);
    if (content instanceof Node) { td.appendChild(content); } else if (content !== undefined) { td.textContent = String(content); }
    tr.appendChild(td);
    return td;
  }

  function lines(parts) {
    var f = document.createDocumentFragment();
    parts.forEach(function (p, i) {
      if (i > 0) { f.appendChild(el("br")); }
      if (p instanceof Node) { f.appendChild(p); } else { f.appendChild(document.createTextNode(String(p))); }
    });
    return f;
  }

  function nameCell(pl, row) {
    var parts = [];
    if (row.kind === "method") {
      parts.push(el("b", null, row.method || ""));
      if (row.target) { parts.push(el("span", "muted", row.target)); }
    } else if (row.kind === "partition") {
      parts.push(el("b", null, row.key ? "partition " : "shared partition"));
      if (row.key) { parts[0].appendChild(el("span", "key", row.key)); }
    } else if (row.kind === "quota") {
      parts.push(el("b", null, "quota " + (row.method || "default")));
      if (row.key) { parts.push(el("span", "muted key", row.key)); }
    } else if (row.kind === "other") {
      parts.push(el("b", null, "other methods"));
      parts.push(el("span", "muted", "past the console's row cap, counted together"));
    }
    return lines(parts);
  }

  function breakerCell(b) {
    if (!b) { return "—"; }
    var pill = el("span", "state", b.state);
    pill.setAttribute("data-state", b.state);
    pill.setAttribute("data-breaker-state", b.state);
    var parts = [pill, (b.in_state_at_least ? "≥ " : "") + fmtDur(b.in_state_ms) + ", " + b.transitions + " transitions"];
    if (b.mode !== "auto") { parts.push(el("span", "warn", b.mode)); }
    if (b.scope !== "method") { parts.push(el("span", "muted scope", b.scope + " " + b.key)); }
    return lines(parts);
  }

  function windowCell(b) {
    if (!b) { return "—"; }
    var f = el("span", b.failure_rate_threshold && b.failure_rate >= b.failure_rate_threshold ? "bad" : "", fmtPct(b.failure_rate) + " failed");
    var parts = [f];
    if (b.slow_call_rate > 0 || b.slow_call_rate_threshold > 0) { parts.push(fmtPct(b.slow_call_rate) + " slow"); }
    parts.push(el("span", "muted", b.window_calls + " calls" + (b.failure_rate_threshold ? ", opens at " + fmtPct(b.failure_rate_threshold) : "")));
    return lines(parts);
  }

  function refusedCell(row) {
    var parts = [];
    if (row.breaker && row.breaker.rejected_per_sec > 0) { parts.push(el("span", "bad", fmtRate(row.breaker.rejected_per_sec) + "/s by the breaker")); }
    if (row.throttle && (row.throttle.rejected_per_sec > 0 || row.throttle.probability > 0)) { parts.push(el("span", "warn", fmtRate(row.throttle.rejected_per_sec) + "/s throttled (p " + fmtPct(row.throttle.probability * 100) + ")")); }
    if (row.bulkhead && row.bulkhead.rejected_per_sec > 0) { parts.push(el("span", "warn", fmtRate(row.bulkhead.rejected_per_sec) + "/s shed")); }
    if (row.rate_limit && row.rate_limit.limited_per_sec > 0) { parts.push(el("span", "warn", fmtRate(row.rate_limit.limited_per_sec) + "/s limited")); }
    var sc = row.server_counts;
    if (sc) {
      if (sc.shed_per_sec > 0) { parts.push(el("span", "warn", fmtRate(sc.shed_per_sec) + "/s shed")); }
      if (sc.rate_limited_per_sec > 0) { parts.push(el("span", "warn", fmtRate(sc.rate_limited_per_sec) + "/s limited")); }
      if (sc.deadline_rejected_per_sec > 0) { parts.push(el("span", "warn", fmtRate(sc.deadline_rejected_per_sec) + "/s past deadline")); }
    }
    return parts.length ? lines(parts) : "0";
  }

  function retryCell(row) {
    var r = row.retry;
    if (r) {
      var parts = [fmtRate(r.retries_per_sec) + "/s " + (r.pattern === "hedging" ? "hedges" : "retries") + (r.max_attempts > 0 ? " (≤" + r.max_attempts + ")" : "")];
      if (r.budget_left >= 0) { parts.push(el("span", r.budget_left === 0 ? "bad" : "muted", "budget left " + r.budget_left)); }
      if (r.denied_per_sec > 0) { parts.push(el("span", "warn", fmtRate(r.denied_per_sec) + "/s denied by the budget")); }
      if (r.exhausted_per_sec > 0) { parts.push(el("span", "bad", fmtRate(r.exhausted_per_sec) + "/s exhausted")); }
      if (r.pushback_per_sec > 0) { parts.push(el("span", "warn", fmtRate(r.pushback_per_sec) + "/s after pushback, waiting " + fmtRate(r.pushback_wait_ms) + " ms")); }
      if (r.fallback_per_sec > 0) { parts.push(el("span", "warn", fmtRate(r.fallback_per_sec) + "/s fallback")); }
      return lines(parts);
    }
    var sc = row.server_counts;
    if (sc && sc.faults_per_sec > 0) { return el("span", "warn", fmtRate(sc.faults_per_sec) + "/s chaos faults"); }
    return "—";
  }

  function bulkheadCell(b) {
    if (!b) { return "—"; }
    var parts = [b.in_flight + " / " + b.limit + " in flight"];
    if (b.waiting > 0) { parts.push(b.waiting + " queued"); }
    if (b.limit !== b.configured_limit) { parts.push(el("span", "muted", "limit " + b.limit + " of " + b.configured_limit + (b.adaptive ? " (adaptive)" : ""))); }
    else if (b.adaptive) { parts.push(el("span", "muted", "adaptive")); }
    return lines(parts);
  }

  function rateCell(l) {
    if (!l) { return "—"; }
    var parts = [];
    if (l.admitted_per_sec >= 0) { parts.push(fmtRate(l.admitted_per_sec) + "/s admitted"); }
    if (l.limited_per_sec >= 0) { parts.push(fmtRate(l.limited_per_sec) + "/s limited"); }
    parts.push(el("span", "muted", fmtRate(l.rate) + "/s, burst " + l.burst + (l.tokens >= 0 ? ", " + Math.floor(l.tokens) + " left" : "") + (l.keys ? ", " + l.keys + " keys" : "")));
    return lines(parts);
  }

  function renderPipeline(pl) {
    var sec = el("div", "pipeline");
    sec.setAttribute("data-pipeline", pl.kind + ":" + pl.name);
    sec.setAttribute("data-trouble", String(num(pl.trouble)));
    var h = el("h2", null, pl.name);
    h.appendChild(el("span", "kind", pl.kind));
    sec.appendChild(h);

    if (pl.server) {
      var s = el("div", "settings");
      s.appendChild(el("span", null, "chaos: " + (pl.server.faults.length ? pl.server.faults.join("; ") : "none")));
      s.appendChild(el("span", null, "deadline: " + pl.server.deadline));
      s.appendChild(el("span", null, "bulkhead: " + pl.server.bulkhead));
      s.appendChild(el("span", null, "rate limit: " + pl.server.rate_limit));
      if (pl.server.faults.length) { s.firstChild.className = "warn"; s.firstChild.setAttribute("data-chaos", "on"); }
      sec.appendChild(s);
    }
    var chips = el("div", "chips");
    (pl.counters || []).forEach(function (c) {
      var chip = el("span", "chip");
      chip.setAttribute("data-counter", c.kind);
      chip.appendChild(el("b", null, c.kind));
      chip.appendChild(document.createTextNode(" " + fmtRate(c.per_sec) + "/s, " + c.total + " in all"));
      chips.appendChild(chip);
    });
    (pl.budgets || []).forEach(function (b) {
      chips.appendChild(el("span", "chip", "budget " + b.target + ": " + (b.available >= 0 ? b.available + " retries left" : "unknown")));
    });
    if (chips.childNodes.length) { sec.appendChild(chips); }

    var table = el("table");
    var thead = el("thead");
    var hr = el("tr");
    ["", "breaker", "window", "refused", pl.kind === "client" ? "retries" : "faults", "bulkhead", "rate limit", "trend"].forEach(function (t) { hr.appendChild(el("th", null, t)); });
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = el("tbody");
    (pl.rows || []).forEach(function (row) {
      var tr = el("tr");
      tr.setAttribute("data-row", row.id);
      tr.setAttribute("data-trouble", String(num(row.trouble)));
      cell(tr, "name", nameCell(pl, row));
      cell(tr, "num", breakerCell(row.breaker));
      cell(tr, "num", windowCell(row.breaker));
      cell(tr, "num", refusedCell(row));
      cell(tr, "num", retryCell(row));
      cell(tr, "num", bulkheadCell(row.bulkhead));
      cell(tr, "num", rateCell(row.rate_limit));
      cell(tr, "", sparkline(hist.get(rowKey(pl, row))));
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    sec.appendChild(table);
    if (!pl.rows || pl.rows.length === 0) { sec.appendChild(el("p", "muted", "No calls yet.")); }
    if (pl.hidden > 0) {
      var more = el("p", "more", pl.hidden + " more not shown");
      more.setAttribute("data-hidden", String(pl.hidden));
      sec.appendChild(more);
    }
    return sec;
  }

  function renderEvents(events) {
    var tbody = $("events").tBodies[0];
    var rows = (events || []).map(function (e) {
      var tr = el("tr");
      tr.setAttribute("data-kind", e.kind);
      tr.setAttribute("data-trouble", String(num(e.trouble)));
      cell(tr, "num", fmtTime(e.time));
      cell(tr, "", e.pipeline);
      cell(tr, e.trouble >= 4 ? "bad" : (e.trouble >= 2 ? "warn" : ""), e.kind + (e.count > 1 ? " ×" + e.count : ""));
      cell(tr, "", [e.method, e.target, e.key].filter(Boolean).join(" "));
      cell(tr, "", e.text);
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows);
    $("events-empty").hidden = rows.length > 0;
  }

  function safeHref(u) {
    return typeof u === "string" && (u.indexOf("http://") === 0 || u.indexOf("https://") === 0) ? u : "";
  }

  function renderRetried(calls) {
    var tbody = $("retried").tBodies[0];
    var rows = (calls || []).map(function (c) {
      var tr = el("tr");
      cell(tr, "num", fmtTime(c.time));
      cell(tr, "", c.pipeline);
      cell(tr, "", c.method + " " + c.target);
      cell(tr, "num", c.attempts);
      cell(tr, c.code === "OK" ? "" : "bad", c.code + (c.fallback ? " (fallback answered)" : ""));
      cell(tr, "steps", (c.steps || []).map(function (s) {
        return "#" + s.attempt + " " + (s.code || "") + " " + s.kind + (s.wait_ms > 0 ? ", waited " + fmtDur(s.wait_ms) : "");
      }).join(" → "));
      var td = cell(tr, "");
      var href = safeHref(c.trace_url);
      if (href) {
        var a = el("a", null, c.trace_id.slice(0, 16));
        a.setAttribute("href", href);
        a.setAttribute("rel", "noopener noreferrer");
        a.setAttribute("target", "_blank");
        td.appendChild(a);
      } else if (c.trace_id) {
        td.textContent = c.trace_id.slice(0, 16);
      }
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows);
    $("retried-empty").hidden = rows.length > 0;
  }

  function render(snap) {
    interval = Math.max(100, num(snap.interval_ms) || 1000);
    absorb(snap);
    document.title = snap.title + " console";
    $("title").textContent = snap.title;
    $("updated").textContent = "sampled " + fmtTime(snap.time);
    var secs = (snap.pipelines || []).map(renderPipeline);
    if (secs.length === 0) { secs = [el("p", "panel muted", "No pipeline is registered.")]; }
    var box = $("pipelines");
    box.replaceChildren.apply(box, secs);
    renderEvents(snap.events);
    renderRetried(snap.retried);
    updates++;
    document.body.setAttribute("data-updates", String(updates));
  }

  function handle(data) {
    var snap;
    try { snap = JSON.parse(data); } catch (e) { return; }
    render(snap);
  }

  function poll(first) {
    fetch(first ? "snapshot.json" : "snapshot.json?history=0", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (t) { handle(t); setLink("polling", "polling"); })
      .catch(function () { setLink("down", "no answer; retrying"); })
      .then(function () { pollTimer = setTimeout(function () { poll(false); }, interval); });
  }

  function startPolling() {
    if (source) { source.close(); source = null; }
    if (pollTimer === null) { poll(true); }
  }

  function connect() {
    if (typeof EventSource === "undefined") { startPolling(); return; }
    source = new EventSource("events");
    source.addEventListener("snapshot", function (e) { sseErrors = 0; setLink("live", "live"); handle(e.data); });
    source.addEventListener("error", function () {
      sseErrors++;
      if (!source || source.readyState === EventSource.CLOSED || sseErrors >= 3) { startPolling(); return; }
      setLink("down", "reconnecting");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
}());
