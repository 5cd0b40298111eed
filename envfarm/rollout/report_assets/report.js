// The run report's behaviour: the episodes table and its filters, the plots (after the table is
// painted), and the episode and group views, built from the embedded JSON only when opened.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  let DETAILS = null; // parsed on first need: an episode opened, or a search typed
  let HAY = null; // per episode, lower-cased commands and outputs, for the search box
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
    ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (x, d) => (x == null ? "–" : Number(x).toFixed(d == null ? 2 : d));
  const pct = (x) => (x == null ? "–" : (100 * x).toFixed(0) + "%");
  const rows = D.rows;
  const groupOf = {};
  D.groups.forEach((g, k) => g.members.forEach((n) => (groupOf[n] = k)));

  function details() {
    if (!DETAILS) DETAILS = JSON.parse($("report-details").textContent);
    return DETAILS;
  }
  function haystack() {
    if (!HAY) {
      const eps = details().eps;
      HAY = eps.map((e) => {
        const parts = [];
        e.turns.forEach((t) => {
          t.calls.forEach((c) => parts.push(c.args.t, c.out.t));
          if (t.obs) parts.push(t.obs.t);
        });
        return parts.join("\n").toLowerCase();
      });
    }
    return HAY;
  }

  // --- clipped texts, diffs -------------------------------------------------------------------
  function clipped(c, eid) {
    if (!c.cut) return esc(c.t);
    return esc(c.t.slice(0, c.at)) + '<span class="cut">… ' + c.cut.toLocaleString() +
      " characters cut here; the full text is in the run's JSONL (episode " + esc(eid) + ") …</span>" +
      esc(c.t.slice(c.at));
  }
  function folded(c, eid, label, open) {
    const lines = c.t.split("\n").length;
    const body = "<pre>" + clipped(c, eid) + "</pre>";
    if (open || (lines <= 12 && c.t.length <= 900 && !c.cut)) return body;
    const first = esc(c.t.split("\n")[0].slice(0, 100));
    return "<details><summary>" + label + " (" + lines + " lines" + (c.cut ? ", clipped" : "") +
      ") <span class=muted>" + first + "</span></summary>" + body + "</details>";
  }
  function diff(c, eid) {
    const out = c.t.split("\n").map((line) => {
      let cls = "";
      if (line.startsWith("diff --git") || line.startsWith("index ") || line.startsWith("+++") ||
          line.startsWith("---")) cls = "fh";
      else if (line.startsWith("@@")) cls = "hunk";
      else if (line.startsWith("+")) cls = "add";
      else if (line.startsWith("-")) cls = "del";
      return cls ? '<span class="' + cls + '">' + esc(line) + "</span>" : esc(line) + "\n";
    }).join("");
    const note = c.cut ? '<span class="cut">… ' + c.cut.toLocaleString() +
      " characters of the patch cut; the whole patch is in the run's JSONL (episode " + esc(eid) + ")</span>" : "";
    return '<pre class="diff">' + out + note + "</pre>";
  }
  function statusCell(r) {
    return '<span class="' + r.status + '">' + r.status + "</span>";
  }

  // --- the episodes table and its filters ------------------------------------------------------
  const F = {status: "", project: "", kind: "", difficulty: "", err: "", reward: "", signal: "", q: ""};
  function distinct(key) {
    return Array.from(new Set(rows.map((r) => (r[key] == null ? "" : String(r[key]))))).filter((x) => x).sort();
  }
  function buildFilters() {
    const spec = [["status", "status", ["resolved", "failed", "masked"]], ["project", "project", distinct("project")]];
    D.fields.forEach((f) => spec.push([f, f === "kind" ? "task kind" : f, distinct(f)]));
    spec.push(["err", "error kind", distinct("err")]);
    spec.push(["reward", "reward", Array.from(new Set(rows.map((r) => (r.reward == null ? "none" : String(r.reward))))).sort()]);
    spec.push(["signal", "exploit", ["any"]]);
    $("filters").innerHTML = spec.map(([key, label, values]) =>
      "<label>" + label + ' <select data-key="' + key + '" id="f-' + key + '"><option value="">all</option>' +
      values.map((v) => '<option value="' + esc(v) + '">' + esc(v) + "</option>").join("") + "</select></label>").join("") +
      '<input id="search" type="search" placeholder="search commands and outputs"> <span id="count"></span>' +
      ' <a href="#" id="f-clear">clear</a>';
    $("filters").querySelectorAll("select").forEach((s) => s.addEventListener("change", () => {
      F[s.dataset.key] = s.value;
      renderTable();
    }));
    let timer = 0;
    $("search").addEventListener("input", (ev) => {
      clearTimeout(timer);
      timer = setTimeout(() => { F.q = ev.target.value.trim().toLowerCase(); renderTable(); }, 150);
    });
    $("f-clear").addEventListener("click", (ev) => { ev.preventDefault(); setFilter({}); });
  }
  function setFilter(values) {
    Object.keys(F).forEach((k) => (F[k] = values[k] || ""));
    $("filters").querySelectorAll("select").forEach((s) => {
      const v = F[s.dataset.key];
      if (v && !Array.from(s.options).some((o) => o.value === v)) s.add(new Option(v, v));
      s.value = v;
    });
    $("search").value = F.q;
    renderTable();
    $("episodes").scrollIntoView();
  }
  function visible(r) {
    if (F.status && r.status !== F.status) return false;
    for (const k of ["project", "kind", "difficulty", "err"]) if (F[k] && String(r[k] || "") !== F[k]) return false;
    if (F.reward && (r.reward == null ? "none" : String(r.reward)) !== F.reward) return false;
    if (F.signal && !(F.signal === "any" ? r.signals.length : r.signals.some((s) => s.startsWith(F.signal)))) return false;
    if (F.q && haystack()[r.n].indexOf(F.q) < 0) return false;
    return true;
  }
  // The first rows are painted at once, the rest appended in chunks: a 2,000-row table laid out in
  // one go holds the first paint back by seconds on a slow machine.
  const FIRST_ROWS = 150, CHUNK = 400;
  let tableGeneration = 0;
  function rowHtml(r) {
    const g = groupOf[r.n];
    return '<tr data-n="' + r.n + '"><td><a href="#ep=' + r.n + '">#' + r.n + '</a></td><td class="task" title="' +
      esc(r.task) + '">' + esc(r.task) + "</td><td>" + esc(r.project) + "</td>" +
      D.fields.map((f) => "<td>" + esc(r[f] || "") + "</td>").join("") + "<td>" + statusCell(r) + "</td><td>" +
      (r.reward == null ? "–" : r.reward) + "</td><td>" + r.turns + "</td><td>" + r.tok + "</td><td>" + esc(r.err) +
      "</td><td>" + esc(r.end) + "</td><td>" + (r.signals.length ? '<span class="pill bad">' + r.signals.length +
      "</span>" : "") + "</td><td>" + fmt(r.time.total, 1) + "</td><td>" +
      (g == null ? "" : '<a href="#group=' + g + '">' + esc(r.group) + "</a>") + "</td></tr>";
  }
  function renderHead() {
    const cols = [["#", 56], ["task", 0], ["project", 120]].concat(D.fields.map((f) => [f, 120]),
      [["status", 76], ["reward", 58], ["turns", 50], ["tokens", 60], ["error", 110], ["end", 80], ["exploit", 56],
       ["seconds", 64], ["group", 0]]);
    $("ep-cols").innerHTML = cols.map(([, w]) => (w ? '<col style="width:' + w + 'px">' : "<col>")).join("");
    $("ep-head").innerHTML = "<tr>" + cols.map(([name]) => "<th>" + name + "</th>").join("") + "</tr>";
  }
  function renderTable(later) {
    const shown = rows.filter(visible);
    const generation = ++tableGeneration;
    const body = $("ep-body");
    document.body.dataset.rows = "";
    body.innerHTML = shown.slice(0, FIRST_ROWS).map(rowHtml).join("");
    $("count").textContent = shown.length + " of " + rows.length + " episodes";
    const more = (from) => {
      if (generation !== tableGeneration) return; // a newer filter took over
      if (from >= shown.length) { document.body.dataset.rows = String(shown.length); return; }
      body.insertAdjacentHTML("beforeend", shown.slice(from, from + CHUNK).map(rowHtml).join(""));
      setTimeout(() => more(from + CHUNK), 0);
    };
    if (later) later(() => more(FIRST_ROWS)); else setTimeout(() => more(FIRST_ROWS), 0);
  }

  // --- one episode, turn by turn -------------------------------------------------------------
  function callHtml(c, eid) {
    let args = c.args.t, cmd = null;
    try { const a = JSON.parse(args); if (a && typeof a.command === "string" && c.name === "bash") cmd = a.command; } catch (e) { /* clipped */ }
    const head = '<span class="nm">' + esc(c.name) + "</span> " + fmt(c.s, 3) + " s" +
      (c.exit != null ? ", exit " + c.exit : "") + (c.err ? ' <span class="pill bad">error</span>' : "");
    const shown = cmd != null ? '<pre class="cmd">$ ' + esc(cmd) + "</pre>" : "<pre>" + clipped(c.args, eid) + "</pre>";
    return '<div class="call">' + head + shown + folded(c.out, eid, "output") + "</div>";
  }
  function timeBar(t) {
    const total = t.setup + t.generation + t.tools + t.grading || 1;
    return '<div class="tbar">' + [["setup", "#8e7cc3"], ["generation", "#3c78d8"], ["tools", "#e69138"],
      ["grading", "#6aa84f"]].map(([k, col]) => '<div title="' + k + " " + fmt(t[k]) + ' s" style="width:' +
      (100 * t[k] / total) + "%;background:" + col + '"></div>').join("") + "</div><span class=kv>" +
      ["setup", "generation", "tools", "grading", "total"].map((k) => k + " <b>" + fmt(t[k]) + " s</b>").join(", ") + "</span>";
  }
  function gradeHtml(g) {
    if (!g) return "<p class=muted>not graded</p>";
    let h = "<p class=kv>status <b>" + esc(g.status) + "</b>, FAIL_TO_PASS <b>" + pct(g.f2p) + "</b>, PASS_TO_PASS <b>" +
      pct(g.p2p) + "</b>, " + g.n_tests + " tests, " + fmt(g.s) + " s" + (g.kind ? ', <span class="pill bad">' + esc(g.kind) +
      "</span>" : "") + "</p>";
    if (g.error) h += "<pre>" + esc(g.error) + "</pre>";
    if (g.tampering.length) h += "<p><b>tampering:</b> " + g.tampering.map(esc).join("; ") + "</p>";
    const phases = Object.keys(g.phases);
    if (phases.length) h += "<p class=kv>grading phases: " + phases.map((k) => k + " " + fmt(g.phases[k]) + " s").join(", ") + "</p>";
    if (g.tests.length) {
      h += '<details open><summary>per-test statuses (failures first' + (g.tests.length < g.n_tests ? "; " +
        g.tests.length + " of " + g.n_tests + " shown, the run's JSONL has them all" : "") + ')</summary><div class="scroll"><table class="list tests">' +
        "<tr><th>test</th><th>status</th><th>set</th></tr>" + g.tests.map(([n, s, c]) => "<tr><td>" + esc(n) +
        '</td><td class="st-' + esc(s) + '">' + esc(s) + "</td><td>" + esc(c) + "</td></tr>").join("") + "</table></div></details>";
    }
    h += "<details><summary>files the patch touched</summary><pre>" + esc(JSON.stringify(g.touched, null, 1)) + "</pre></details>";
    if (g.log.t) h += "<details><summary>test log (tail)</summary><pre>" + clipped(g.log, "") + "</pre></details>";
    return h;
  }
  function episodeHtml(n) {
    const r = rows[n], e = details().eps[n];
    const g = groupOf[n];
    let h = '<a href="#" class="close">close ✕</a><h2 id="episode-title">#' + n + " " + esc(r.task) + "</h2>";
    h += "<p class=kv>" + statusCell(r) + ", reward <b>" + (r.reward == null ? "none (masked)" : r.reward) + "</b>, <b>" + r.turns +
      "</b> turns, ended by <b>" + esc(r.end || "?") + "</b>" + (r.err ? ', error kind <span class="pill bad">' + esc(r.err) +
      "</span>" : "") + "; project <b>" + esc(r.project) + "</b>" + D.fields.map((f) => r[f] ? ", " + f + " <b>" + esc(r[f]) +
      "</b>" : "").join("") + "; policy " + esc(r.policy) + (r.demo ? " (demonstration)" : "") + "; episode " + esc(r.id) +
      (g != null ? '; group <a href="#group=' + g + '">' + esc(r.group) + "</a> member " + r.member : "") +
      "; attempt " + e.attempt + ", host " + esc(e.farm.host || "?") + "</p>";
    h += timeBar(r.time);
    if (r.signals.length) h += '<p><b class="failed">exploit signals:</b> ' + r.signals.map(esc).join("; ") + "</p>";
    if (e.error.t) h += "<p><b>error</b></p><pre>" + clipped(e.error, r.id) + "</pre>";
    if (e.system != null) h += "<details><summary>system prompt</summary><pre>" + esc(details().prompts[e.system]) + "</pre></details>";
    if (e.prompt != null) h += "<details><summary>task (the prompt)</summary><pre>" + esc(details().prompts[e.prompt]) + "</pre></details>";
    e.turns.forEach((t, i) => {
      h += '<div class="turn" id="turn-' + i + '"><div class="hd">turn ' + (i + 1) + ' <span class="muted">generation ' +
        fmt(t.gen) + " s, tools " + fmt(t.tool) + " s" + (t.finish ? ", finish " + esc(t.finish) : "") + "</span>" +
        (t.fmt ? ' <span class="pill bad">format error</span>' : "") + "</div>";
      if (t.text.t) h += folded(t.text, r.id, "assistant", t.text.t.length < 2000);
      if (t.parse.length) h += "<p class=failed>" + t.parse.map(esc).join("<br>") + "</p>";
      t.calls.forEach((c) => (h += callHtml(c, r.id)));
      if (t.obs) h += folded(t.obs, r.id, "observation");
      h += "</div>";
    });
    h += "<h3>final patch</h3>" + (e.patch.t ? diff(e.patch, r.id) : "<p class=muted>no patch</p>");
    h += "<h3>grade</h3>" + gradeHtml(e.grade);
    return h;
  }

  // --- a GRPO group side by side ------------------------------------------------------------
  function actionCell(t, eid) {
    if (!t) return '<td class="muted">(ended)</td>';
    let h = "";
    if (!t.calls.length) h += "<pre>" + esc(t.text.t.slice(0, 600)) + "</pre>";
    t.calls.forEach((c) => {
      let shown = c.args.t;
      try { const a = JSON.parse(shown); if (a && typeof a.command === "string" && c.name === "bash") shown = "$ " + a.command; } catch (e) { /* clipped */ }
      h += '<span class="nm">' + esc(c.name) + "</span><pre>" + esc(shown.slice(0, 600)) + "</pre>" +
        folded({t: c.out.t.slice(0, 1500), cut: 0}, eid, "output");
    });
    return "<td>" + h + "</td>";
  }
  function groupHtml(k) {
    const g = D.groups[k], eps = details().eps;
    const members = g.members.map((n) => rows[n]);
    let h = '<a href="#" class="close">close ✕</a><h2 id="group-title">group ' + esc(g.id) + "</h2><p class=kv>task <b>" +
      esc(g.task) + "</b>, rewards <b>" + g.rewards.map((x) => (x == null ? "none" : x)).join(", ") + "</b>, mean " +
      fmt(g.mean) + ", std " + fmt(g.std) + "; " + (g.diverged == null ? "the members' paths never diverged" :
      "paths diverged at <b>turn " + (g.diverged + 1) + "</b> (red line)") + "</p>";
    const depth = Math.max(...members.map((r) => r.turns));
    h += '<div style="overflow:auto"><table class="grid"><tr><th></th>' + members.map((r) => '<th><a href="#ep=' + r.n + '">#' +
      r.n + "</a> member " + r.member + " " + statusCell(r) + " reward " + (r.reward == null ? "none" : r.reward) +
      (r.demo ? " (demo)" : "") + "</th>").join("") + "</tr>";
    for (let i = 0; i < depth; i++) {
      const cls = g.diverged == null || i < g.diverged ? "same" : i === g.diverged ? "split" : "";
      h += '<tr class="' + cls + '"><th>turn ' + (i + 1) + "</th>" + members.map((r) => actionCell(eps[r.n].turns[i], r.id)).join("") + "</tr>";
    }
    h += "<tr><th>patch</th>" + members.map((r) => "<td>" + (eps[r.n].patch.t ? diff(eps[r.n].patch, r.id) : "–") + "</td>").join("") + "</tr></table></div>";
    return h;
  }
  function renderGroups() {
    if (!D.groups.length) { $("groups").innerHTML = "<p class=muted>No GRPO groups with two or more members in this run.</p>"; return; }
    $("groups").innerHTML = '<div class="scroll"><table class="list"><tr><th>group</th><th>task</th><th>members</th><th>rewards</th>' +
      "<th>mean</th><th>std</th><th>diverged at turn</th></tr>" + D.groups.map((g, k) => '<tr><td><a href="#group=' + k + '">' +
      esc(g.id) + "</a></td><td>" + esc(g.task) + "</td><td>" + g.members.length + "</td><td>" + g.members.map((n) =>
      statusCell(rows[n])).join(" ") + "</td><td>" + fmt(g.mean) + "</td><td>" + fmt(g.std) + "</td><td>" +
      (g.diverged == null ? "never" : g.diverged + 1) + "</td></tr>").join("") + "</table></div>";
  }

  // --- routing: #ep=N, #group=K ----------------------------------------------------------------
  function route() {
    const m = /^#(ep|group)=(\d+)$/.exec(location.hash);
    const view = $("view");
    if (!m || (m[1] === "ep" && !rows[+m[2]]) || (m[1] === "group" && !D.groups[+m[2]])) { view.hidden = true; view.innerHTML = ""; return; }
    view.innerHTML = m[1] === "ep" ? episodeHtml(+m[2]) : groupHtml(+m[2]);
    view.hidden = false;
    view.querySelector(".close").addEventListener("click", (ev) => { ev.preventDefault(); history.pushState(null, "", "#"); route(); });
    view.scrollIntoView();
  }

  // --- plots ----------------------------------------------------------------------------------
  const LAYOUT = {margin: {l: 50, r: 10, t: 10, b: 40}, font: {size: 11, family: "system-ui, sans-serif"},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", legend: {orientation: "h", y: -0.25}, hovermode: "closest"};
  function plotBox(f, into) {
    const box = document.createElement("div");
    box.className = "plot";
    box.innerHTML = "<h3>" + esc(f.title) + "</h3>" + (f.note ? '<div class="note">' + esc(f.note) + "</div>" : "") +
      (f.empty ? "" : '<div class="fig" id="fig-' + esc(f.id) + '"></div>');
    into.appendChild(box);
    return box.querySelector(".fig");
  }
  function onClick(f, div) {
    if (!f.click) return;
    div.on("plotly_click", (ev) => {
      const v = ev.points[0].customdata;
      if (v == null) return;
      if (f.click === "episode") location.hash = "#ep=" + v;
      else { const key = f.click.split(":")[1]; const vals = {}; vals[key] = String(v); setFilter(vals); }
    });
  }
  function drawPlots(done) {
    const queue = [];
    [[D.figs, $("plots")], [D.train_figs, $("train-plots")]].forEach(([figs, into]) =>
      figs.forEach((f) => { const div = plotBox(f, into); if (div) queue.push([f, div]); }));
    const step = () => {
      const item = queue.shift();
      if (!item) { done(); return; }
      const [f, div] = item;
      const layout = Object.assign({}, f.fig.layout || {}, LAYOUT);
      layout.xaxis = Object.assign({automargin: true}, (f.fig.layout || {}).xaxis);
      layout.yaxis = Object.assign({automargin: true}, (f.fig.layout || {}).yaxis);
      Plotly.newPlot(div, f.fig.data, layout, {displaylogo: false, responsive: true,
        modeBarButtonsToRemove: ["select2d", "lasso2d"]}).then(() => { onClick(f, div); setTimeout(step, 0); });
    };
    step();
  }

  function loadPlotly(then) {
    const src = $("plotly-src");
    const script = document.createElement("script");
    script.src = URL.createObjectURL(new Blob([src.textContent], {type: "text/javascript"}));
    script.onload = then;
    document.head.appendChild(script);
  }

  // --- start ----------------------------------------------------------------------------------
  buildFilters();
  renderHead();
  let restOfTable = null;
  renderTable((rest) => (restOfTable = rest)); // the rest of the rows once the first ones are painted
  renderGroups();
  $("ep-body").addEventListener("click", (ev) => { // a click anywhere on a row opens its episode
    const tr = ev.target.closest("tr");
    if (tr && !ev.target.closest("a")) location.hash = "#ep=" + tr.dataset.n;
  });
  window.addEventListener("hashchange", route);
  requestAnimationFrame(() => setTimeout(() => {
    performance.mark("table-painted");
    restOfTable();
    document.body.dataset.table = "painted";
    route();
    // plotly after the load event: a script added before it would hold the event back
    const plots = () => loadPlotly(() => drawPlots(() => {
      performance.mark("plots-drawn");
      document.body.dataset.plots = "drawn";
    }));
    if (document.readyState === "complete") plots(); else window.addEventListener("load", () => setTimeout(plots, 0));
  }, 0));
})();
