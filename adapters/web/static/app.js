// itertrack dashboard: charts (vega-embed), ticking times and the live board (server-sent events).
// Every stored text goes into the page through textContent, never as HTML.
"use strict";

(function () {
  function humanDuration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "-";
    seconds = Math.max(0, seconds);
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    let whole = Math.round(seconds);
    const parts = [];
    for (const [name, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
      if (whole >= size) { parts.push(Math.floor(whole / size) + " " + name); whole %= size; }
    }
    if (seconds < 3600 && whole) parts.push(whole + " s");
    return parts.slice(0, 3).join(" ");
  }

  // -- charts ----------------------------------------------------------------------------------
  function drawCharts() {
    const specs = document.querySelectorAll('script[type="application/json"][data-chart]');
    if (!specs.length || typeof vegaEmbed !== "function") return;
    specs.forEach(function (script) {
      const target = document.getElementById(script.dataset.chart);
      const spec = JSON.parse(script.textContent);
      vegaEmbed(target, spec, { actions: false, renderer: "svg" }).catch(function (e) {
        target.textContent = "chart failed: " + e;
      });
    });
  }

  // -- the live board --------------------------------------------------------------------------
  function startBoard() {
    const board = document.getElementById("board");
    const configScript = document.getElementById("board-config");
    if (!board || !configScript) return;
    const config = JSON.parse(configScript.textContent);
    const offset = Date.parse(config.server_time) - Date.now(); // server clock minus ours
    const staleMs = config.stale_after_s * 1000;
    const filters = config.filters || {};
    const status = document.getElementById("live-status");
    const keepFinished = 20;

    function now() { return Date.now() + offset; }

    function tick() {
      const t = now();
      board.querySelectorAll(".tick[data-since]").forEach(function (el) {
        el.textContent = humanDuration((t - Date.parse(el.dataset.since)) / 1000);
      });
      board.querySelectorAll('tr[data-status="running"]').forEach(function (tr) {
        const flag = tr.querySelector(".stale");
        if (flag) flag.hidden = !(t - Date.parse(tr.dataset.updated) > staleMs);
      });
    }

    function admits(row) {
      if (filters.agent && row.agent_id !== filters.agent) return false;
      if (filters.status && row.status !== filters.status) return false;
      const started = Date.parse(row.started_at);
      if (filters.since && started < Date.parse(filters.since)) return false;
      if (filters.until && started >= Date.parse(filters.until)) return false;
      return true;
    }

    function cell(tr, className, child) {
      const td = document.createElement("td");
      td.className = className;
      if (typeof child === "string") td.textContent = child; else if (child) td.appendChild(child);
      tr.appendChild(td);
      return td;
    }

    function bdi(text, className) {
      const el = document.createElement("bdi");
      el.textContent = text;
      if (className) el.className = className;
      return el;
    }

    function renderRow(row) {
      const tr = document.createElement("tr");
      tr.id = "it-" + row.iteration_id;
      tr.dataset.status = row.status;
      tr.dataset.agent = row.agent_id;
      tr.dataset.started = row.started_at;
      tr.dataset.updated = row.updated_at;
      cell(tr, "agent", bdi(row.agent_id));
      const link = document.createElement("a");
      link.href = "/iterations/" + encodeURIComponent(row.iteration_id);
      link.textContent = "#" + row.iteration_number;
      cell(tr, "num", link);
      cell(tr, "phase", bdi(row.phase));
      if (row.status === "running") {
        const span = document.createElement("span");
        span.className = "tick";
        span.dataset.since = row.phase_entered_at;
        span.textContent = humanDuration((now() - Date.parse(row.phase_entered_at)) / 1000);
        cell(tr, "time", span);
      } else {
        cell(tr, "time", row.time_in_phase_text);
      }
      cell(tr, "num tokens", Number(row.tokens).toLocaleString("en-US"));
      cell(tr, "num usd", row.usd_text);
      const error = cell(tr, "error", null);
      if (row.error !== null && row.error !== undefined) {
        error.appendChild(bdi(row.failed_in || ""));
        error.appendChild(document.createTextNode(": "));
        error.appendChild(bdi(row.error, "error-text"));
      }
      const flag = cell(tr, "flag", null);
      if (row.status === "running") {
        const stale = document.createElement("span");
        stale.className = "stale";
        stale.textContent = "stale";
        stale.hidden = !(now() - Date.parse(row.updated_at) > staleMs);
        flag.appendChild(stale);
      }
      return tr;
    }

    function recount() {
      board.querySelectorAll("tbody[data-status]").forEach(function (body) {
        const count = board.querySelector('[data-count-for="' + body.dataset.status + '"]');
        if (count) count.textContent = String(body.rows.length);
      });
    }

    function apply(row) {
      const old = document.getElementById("it-" + row.iteration_id);
      if (old) old.remove();
      if (!admits(row)) { recount(); return; }
      const body = board.querySelector('tbody[data-status="' + row.status + '"]');
      if (!body) { recount(); return; }
      body.insertBefore(renderRow(row), body.firstChild);
      if (row.status !== "running") {
        while (body.rows.length > keepFinished) body.deleteRow(body.rows.length - 1);
      }
      recount();
    }

    let lastId = String(config.position);
    let source = null;
    function connect() {
      source = new EventSource("/events?after=" + encodeURIComponent(lastId));
      source.addEventListener("open", function () { status.textContent = "live"; status.className = "live-status live"; });
      source.addEventListener("iteration", function (e) { lastId = e.lastEventId || lastId; apply(JSON.parse(e.data)); });
      source.addEventListener("position", function (e) { lastId = e.lastEventId || lastId; board.dataset.position = lastId; });
      source.addEventListener("reload", function () { source.close(); window.location.reload(); });
      source.addEventListener("error", function () {
        status.textContent = "reconnecting…";
        status.className = "live-status down";
        if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000); // the browser gave up: start again
      });
    }
    board.dataset.position = lastId;
    connect();
    tick();
    setInterval(tick, 1000);
  }

  drawCharts();
  startBoard();
})();
