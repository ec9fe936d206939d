/* lrsearch dashboard: one job's page. Polls the REST API about once a second while the job is not
 * finished, updates table rows in place and redraws plots with Plotly.react (no flicker, zoom kept).
 * Metrics come from one dashboard endpoint, and only for the trials whose epoch count moved. A big
 * job (config.summary) draws the server's summary instead and shows the table a page at a time. */
"use strict";

(() => {
  const { el, setText, api, config, isNum } = LR;
  const jobId = config.jobId;
  const $ = (id) => document.getElementById(id);

  const MAX_TRIAL_TRACES = 120; // above this many trials, curves are drawn as one trace per lr band
  const LR_BANDS = 12;
  const PC_BANDS = 10;
  const CURVES_TRIALS_PER_REQUEST = 200;
  const OPT_COLORS = { sgd: "#2563eb", adam: "#ea580c", adamw: "#16a34a", rmsprop: "#9333ea", adagrad: "#a16207" };
  const SCHED_COLORS = { constant: "#0891b2", step: "#db2777", exponential: "#65a30d", cosine: "#7c3aed", onecycle: "#d97706" };
  const EXTRA_COLORS = ["#0f766e", "#be123c", "#4338ca", "#854d0e", "#374151"];
  const STATUS_SYMBOL = { completed: "circle", running: "circle-open", queued: "circle-open", pruned: "diamond",
                          diverged: "x", failed: "square", cancelled: "circle-open" };
  const STATUS_COLOR = { completed: "#15803d", running: "#1d4ed8", queued: "#9ca3af", pruned: "#d97706",
                         diverged: "#dc2626", failed: "#a21caf", cancelled: "#9ca3af" };
  // Plasma without its pale yellow end: readable on white.
  const LR_SCALE = [[0, "#0d0887"], [0.25, "#6a00a8"], [0.5, "#b12a90"], [0.75, "#e16462"], [1, "#f2844b"]];
  // val_loss: green (low, good) to red (high).
  const LOSS_SCALE = [[0, "#047857"], [0.5, "#d97706"], [1, "#b91c1c"]];
  const FONT = { family: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif', size: 12, color: "#1f2430" };
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  const state = {
    job: null,
    trials: [],              // as the API answers them, ordered by number
    byNumber: new Map(),
    curves: new Map(),       // number -> {n, epoch[], train[], val[], lr[]} (arrays indexed by epoch)
    best: null, bestKey: null,
    dataVersion: 0, plottedVersion: -1, plotsDirty: true,
    lastPlotAt: 0, plotCost: 0,
    colorBy: "optimizer", lrAxis: "log",
    sort: { key: "number", dir: 1 }, filter: "",
    // A big job (more trials than config.summaryAbove): the plots draw the server's summary (a
    // sample, the best-so-far line, curves by lr band) and the table shows one page of the server's.
    big: !!config.summary, summary: null, page: null, pageOffset: 0,
  };

  // -- formatting ----------------------------------------------------------------------------
  // For Plotly's text (labels, hover, legend), which parses its own tags (<b>, <br>, <a href=...>):
  // with < and > escaped no tag can form, so quotes need nothing; Plotly would show "&quot;" as is.
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function describe(t) {
    const c = t.config || {};
    const parts = [`#${t.number}`, `lr ${LR.fmtLr(c.lr)}`, c.optimizer, c.schedule];
    if (isNum(c.warmup_fraction) && c.warmup_fraction > 0) parts.push(`warmup ${c.warmup_fraction}`);
    return esc(parts.filter(Boolean).join(" \u00b7 ") + (t.status === "completed" ? "" : ` (${t.status})`));
  }
  // -- the job's objective and length -----------------------------------------------------------
  /** What the job ranks by: its metric's name and whether higher is better. */
  function objective() {
    const o = state.job?.spec?.objective || {};
    return { metric: o.metric || "val_loss", max: o.mode === "max" };
  }
  /** A trial's best value of the objective (older answers without one: its val_loss). */
  const obj = (t) => (t.objective !== undefined ? t.objective : t.val_loss);
  const stepJob = () => isNum(state.job?.spec?.steps);
  // A trial's kind and the job's views come from the server, which asks the strategy.
  const isRangeTest = (t) => t.kind === "range_test";
  const trained = () => state.trials.filter((t) => !isRangeTest(t));
  const isFinderJob = () => (state.job?.views || []).includes("range_tests");
  const isPopulationJob = () => (state.job?.views || []).includes("population");
  /** Evaluations per trial: epochs, or steps / eval_every. */
  function rounds() {
    const s = state.job?.spec || {};
    return stepJob() ? Math.ceil(s.steps / (s.eval_every || s.steps)) : s.epochs;
  }
  const unit = () => (stepJob() ? "evaluations" : "epochs");
  function groupColor(kind, name, names) {
    const table = kind === "optimizer" ? OPT_COLORS : SCHED_COLORS;
    return table[name] || EXTRA_COLORS[Math.max(0, names.indexOf(name)) % EXTRA_COLORS.length];
  }
  function hexToRgb(h) { const n = parseInt(h.slice(1), 16); return [n >> 16, (n >> 8) & 255, n & 255]; }
  function scaleColor(t, scale) {
    scale = scale || LR_SCALE;
    t = Math.max(0, Math.min(1, isNum(t) ? t : 0.5));
    for (let i = 1; i < scale.length; i++) {
      const [t1, c1] = scale[i];
      if (t <= t1) {
        const [t0, c0] = scale[i - 1];
        const f = (t - t0) / (t1 - t0 || 1);
        const a = hexToRgb(c0), b = hexToRgb(c1);
        return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
      }
    }
    return scale[scale.length - 1][1];
  }
  const lossColor = (t) => scaleColor(t, LOSS_SCALE);

  // -- data ----------------------------------------------------------------------------------
  function sameTrial(a, b) {
    return a && a.status === b.status && a.val_loss === b.val_loss && obj(a) === obj(b) && a.epochs === b.epochs &&
      a.best_epoch === b.best_epoch && a.finished_at === b.finished_at && a.started_at === b.started_at &&
      a.error === b.error;
  }

  function takeTrials(items) {
    let changed = items.length !== state.trials.length;
    for (const t of items) if (!sameTrial(state.byNumber.get(t.number), t)) { changed = true; break; }
    state.trials = items;
    state.byNumber = new Map(items.map((t) => [t.number, t]));
    if (changed) state.dataVersion++;
  }

  function curveOf(number) {
    let c = state.curves.get(number);
    if (!c) { c = { n: 0, epoch: [], step: [], train: [], val: [], lr: [] }; state.curves.set(number, c); }
    return c;
  }

  function mergeColumns(cols) {
    const touched = new Set();
    for (let i = 0; i < cols.trial.length; i++) {
      const c = curveOf(cols.trial[i]);
      const e = cols.epoch[i];
      c.epoch[e] = e; c.train[e] = cols.train_loss[i]; c.lr[e] = cols.lr[i];
      c.val[e] = (cols.objective || cols.val_loss)[i];  // the job's objective at each evaluation
      c.step[e] = cols.step ? cols.step[i] : null;
      touched.add(c);
    }
    for (const c of touched) { let n = 0; while (c.epoch[n] !== undefined) n++; c.n = n; }
    if (cols.trial.length) state.dataVersion++;
  }

  /** Fetch the metrics the page lacks: for each trial, the epochs after those it holds. */
  async function syncCurves() {
    const need = [];
    for (const t of state.trials) {
      const c = state.curves.get(t.number);
      const held = c ? c.n : 0;
      if (c && t.epochs < held) { // the trial was reset (re-run after a restart): forget its old epochs
        for (const key of ["epoch", "step", "train", "val", "lr"]) c[key].length = t.epochs;
        c.n = t.epochs; state.dataVersion++;
      } else if (t.epochs > held) {
        need.push([t.number, held]);
      }
    }
    if (!need.length) return;
    const base = `/dashboard-api/jobs/${jobId}/curves`;
    if (need.length > CURVES_TRIALS_PER_REQUEST) { // a first load of a big job: page through all of it
      let start = need[0][0];
      for (;;) {
        const res = await api(`${base}?start=${start}`);
        if (!res.ok) throw new Error(LR.errorText(res));
        mergeColumns(res.data);
        if (!res.data.more || !res.data.trial.length) break;
        start = res.data.trial[res.data.trial.length - 1];
      }
      return;
    }
    const res = await api(`${base}?trials=${need.map(([n, e]) => `${n}:${e}`).join(",")}`);
    if (!res.ok) throw new Error(LR.errorText(res));
    mergeColumns(res.data);
  }

  async function syncBest(job) {
    const key = job.best ? `${job.best.trial}:${job.best.objective?.value ?? job.best.val_loss}` : null;
    if (key === state.bestKey) return;
    if (key === null) { state.best = null; state.bestKey = null; return; }
    const res = await api(bestPath());
    if (res.ok) { state.best = res.data; state.bestKey = key; } else if (res.status === 404) { state.best = null; }
  }

  /** /best, with ?batch_size= when the user asked for the rate at another batch size. */
  function bestPath() {
    const batch = Number($("best-batch").value);
    return `/jobs/${jobId}/best` + (Number.isInteger(batch) && batch > 0 ? `?batch_size=${batch}` : "");
  }

  async function rescaleBest() {
    const res = await api(bestPath());
    if (res.ok) { state.best = res.data; renderBest(); return; }
    setText($("best-transfer"), LR.errorText(res));
    $("best-transfer").hidden = false;
  }

  /** The range tests' curves and suggestions (a job whose strategy has that view), fetched again when a test ends. */
  async function syncFinder() {
    if (!isFinderJob()) return;
    const key = state.trials.filter((t) => isRangeTest(t) && LR.FINISHED.includes(t.status)).length;
    if (key === state.finderKey) return;
    const res = await api(`/jobs/${jobId}/range_test`);
    if (!res.ok) throw new Error(LR.errorText(res));
    state.finder = res.data.items; state.finderKey = key; state.dataVersion++;
  }

  /** A population's members and exploits, fetched again when a segment ends. */
  async function syncPopulation() {
    if (!isPopulationJob()) return;
    const key = state.trials.filter((t) => LR.FINISHED.includes(t.status)).length + ":" + state.trials.length;
    if (key === state.populationKey) return;
    const res = await api(`/jobs/${jobId}/population`);
    if (!res.ok) throw new Error(LR.errorText(res));
    state.population = res.data; state.populationKey = key; state.dataVersion++;
  }

  // -- a big job: the server's summary and one page of the table, each sent only when it changed --
  const SERVER_ORDER = { number: "number", status: "status", val_loss: "rank", epochs: "epochs" };
  function tablePath() {
    const order = (state.sort.dir < 0 ? "-" : "") + SERVER_ORDER[state.sort.key];
    const status = state.filter ? `&status=${state.filter}` : "";
    const since = state.page?.stamp ? `&since=${state.page.stamp}` : "";
    return `/dashboard-api/jobs/${jobId}/trials?offset=${state.pageOffset}&limit=${config.tablePage}&order=${order}${status}${since}`;
  }

  /** The summary's sample as trials (what the scatter plots draw). */
  function takeSummary(sum) {
    const p = sum.points;
    state.summary = sum;
    state.trials = p.number.map((number, i) => ({
      number, status: p.statuses[p.status[i]], objective: p.objective[i],
      config: { lr: p.lr[i], optimizer: p.optimizers[p.optimizer[i]], schedule: p.schedules[p.schedule[i]] } }));
    // What only parallel coordinates show, for the points they draw.
    state.parcoords = sum.parcoords.index.map((i, k) => {
      const t = state.trials[i];
      return { ...t, val_loss: sum.parcoords.val_loss[k], config: { ...t.config, warmup_fraction: sum.parcoords.warmup[k] } };
    });
    state.byNumber = new Map(state.trials.map((t) => [t.number, t]));
    state.dataVersion++;
  }

  async function tickBig() {
    const since = state.summary ? `?since=${state.summary.stamp}` : "";
    const [sumRes, pageRes] = await Promise.all([api(`/dashboard-api/jobs/${jobId}/summary${since}`), api(tablePath()),
                                                 syncBest(state.job)]);
    if (!sumRes.ok) throw new Error(LR.errorText(sumRes));
    if (!pageRes.ok) throw new Error(LR.errorText(pageRes));
    const changed = !sumRes.data.unchanged;
    if (changed) takeSummary(sumRes.data);
    if (!pageRes.data.unchanged) state.page = pageRes.data;
    await Promise.all([syncFinder(), syncPopulation()]);
    renderHeader();
    renderBest();
    renderTable();
    renderPlots(false);
    const done = LR.TERMINAL_JOB.includes(state.job.status) && !changed;
    if (done) renderPlots(true);
    return done;
  }

  async function tick() {
    if (state.big) {
      const jobRes = await api(`/jobs/${jobId}`);
      if (!jobRes.ok) throw new Error(LR.errorText(jobRes));
      state.job = jobRes.data;
      return tickBig();
    }
    const [jobRes, trialsRes] = await Promise.all([api(`/jobs/${jobId}`), api(`/jobs/${jobId}/trials?limit=10000`)]);
    if (!jobRes.ok) throw new Error(LR.errorText(jobRes));
    if (!trialsRes.ok) throw new Error(LR.errorText(trialsRes));
    state.job = jobRes.data;
    if (trialsRes.data.total > config.summaryAbove) { // it grew past what the page draws trial by trial
      state.big = true; state.trials = []; state.curves.clear();
      return tickBig();
    }
    const before = state.dataVersion;
    takeTrials(trialsRes.data.items);
    await Promise.all([syncCurves(), syncBest(state.job), syncFinder(), syncPopulation()]);
    renderHeader();
    renderBest();
    renderTable();
    renderPlots(false);
    const complete = state.trials.every((t) => (state.curves.get(t.number)?.n || 0) >= t.epochs);
    // A finished job: stop once everything is here (or nothing more arrives: never poll forever).
    const done = LR.TERMINAL_JOB.includes(state.job.status) && (complete || state.dataVersion === before);
    if (done) renderPlots(true);
    return done;
  }

  // -- header --------------------------------------------------------------------------------
  function renderHeader() {
    const job = state.job;
    setText($("job-name"), job.name);
    document.title = `${job.name} \u00b7 lrsearch`;
    LR.setBadge($("job-status"), job.status);
    const done = LR.finishedCount(job.trial_counts);
    LR.setBar($("job-bar"), job.total_trials ? done / job.total_trials : job.status === "completed" ? 1 : 0);
    setText($("job-progress"), `${done} / ${job.total_trials ?? "?"} trials finished`);
    const counts = $("job-counts");
    const entries = Object.entries(job.trial_counts).filter(([, n]) => n > 0);
    const sig = entries.map(([k, n]) => `${k}${n}`).join();
    if (counts.dataset.sig !== sig) {
      counts.dataset.sig = sig;
      counts.replaceChildren(...entries.map(([k, n]) => { const b = LR.badge(k); b.textContent = `${k} ${n}`; return b; }));
    }
    const spec = job.spec || {};
    const meta = $("job-meta");
    const length = stepJob() ? [["steps", spec.steps], ["eval every", spec.eval_every]] : [["epochs", spec.epochs]];
    const o = objective();
    const items = [["workload", spec.workload], ["strategy", spec.strategy], ...length,
      ["objective", `${o.metric} (${o.max ? "max" : "min"})`],
      ["concurrent", spec.max_concurrent], ["created", LR.fmtTime(job.created_at)]];
    if (job.started_at) items.push(["ran", LR.fmtDuration(LR.seconds(job.started_at, job.finished_at))]);
    for (const e of document.querySelectorAll(".objective-name")) setText(e, o.metric);
    for (const e of document.querySelectorAll(".length-unit")) setText(e, stepJob() ? "steps" : "epochs");
    const msig = JSON.stringify(items);
    if (meta.dataset.sig !== msig) {
      meta.dataset.sig = msig;
      meta.replaceChildren(...items.flatMap(([k, v], i) => [i ? " \u00b7 " : "", `${k} `, el("b", { text: v ?? "" })]));
    }
    const err = $("job-error");
    err.hidden = !job.error;
    setText(err, job.error || "");
    $("cancel").hidden = LR.TERMINAL_JOB.includes(job.status);
  }

  function setupCancel() {
    LR.armCancel($("cancel"), jobId, { idle: "Cancel job", armed: "Click again to cancel" }, () => kick());
  }

  // -- best configuration --------------------------------------------------------------------
  // A manual rerun of the best trial, trained from the same init as it was (its job's training seed).
  function rerunSpec() {
    const b = state.best, spec = state.job.spec || {};
    const length = stepJob() ? { steps: spec.steps, eval_every: spec.eval_every } : { epochs: spec.epochs };
    // At another batch size (the transfer asked for in the best card): that batch size, the scaled rate.
    const batch = b.transfer ? b.transfer.to_batch_size : spec.batch_size;
    if (isNum(batch)) length.batch_size = batch;
    return { name: `rerun of ${state.job.name} #${b.trial}`.slice(0, 200), workload: spec.workload,
             strategy: "manual", ...length, seed: spec.training_seed ?? spec.seed ?? 0, configs: [bestConfig()] };
  }
  const bestConfig = () => ({ ...state.best.config, lr: state.best.lr });
  function curlSnippet() {
    const body = JSON.stringify(rerunSpec()).replace(/'/g, "'\\''");
    const url = `${location.origin}${config.api}/jobs`.replace(/'/g, "'\\''");
    return `curl -X POST '${url}' \\\n  -H 'Content-Type: application/json' \\\n  -d '${body}'`;
  }
  // Strings, lists (lr_points) and objects as JSON, which YAML reads as the same value.
  function yamlScalar(v) {
    if (typeof v === "string" || (v !== null && typeof v === "object")) return JSON.stringify(v);
    return v === null || v === undefined ? "null" : String(v);
  }
  function yamlSnippet() {
    const s = rerunSpec();
    const lines = ["# lrsearch submit best.yaml --wait"];
    for (const key of ["name", "workload", "strategy", "epochs", "steps", "eval_every", "batch_size", "seed"]) {
      if (key in s) lines.push(`${key}: ${yamlScalar(s[key])}`);
    }
    lines.push("configs:");
    Object.entries(s.configs[0]).forEach(([k, v], i) => lines.push(`${i ? "    " : "  - "}${k}: ${yamlScalar(v)}`));
    return lines.join("\n") + "\n";
  }
  function renderBest() {
    const b = state.best;
    $("best-empty").hidden = !!b;
    $("best-body").hidden = !b;
    if (!b) return;
    const lr = $("best-lr");
    setText(lr, LR.fmtLr(b.lr));
    lr.dataset.lr = String(b.lr);
    lr.title = String(b.lr);
    const c = b.config || {};
    const warm = isNum(c.warmup_fraction) && c.warmup_fraction > 0 ? ` \u00b7 warmup ${c.warmup_fraction}` : "";
    const value = b.objective ? b.objective.value : b.val_loss, metric = b.objective ? b.objective.metric : "val_loss";
    const at = isNum(b.step) ? ` at step ${b.step}` : b.epoch !== null && b.epoch !== undefined ? ` at epoch ${b.epoch}` : "";
    setText($("best-sub"), `${metric} ${LR.fmtLoss(value)}${at}` +
      ` \u00b7 trial #${b.trial} \u00b7 ${c.optimizer} \u00b7 ${c.schedule}${warm}`);
    // How sure the best is: the rates as good as it, and each optimizer's own best.
    const interval = b.lr_interval;
    $("best-interval").hidden = !interval;
    if (interval) {
      setText($("best-interval"), `as good: lr ${LR.fmtLr(interval.low)} to ${LR.fmtLr(interval.high)} ` +
        `(within ${LR.fmtNum(interval.tolerance)} of the best ${interval.metric}, ${interval.method.replace("_", " ")})`);
    }
    const perOptimizer = Object.entries(b.per_optimizer || {});
    $("best-per-optimizer").hidden = perOptimizer.length < 2;
    setText($("best-per-optimizer-metric"), metric);
    $("best-per-optimizer").tBodies[0].replaceChildren(...perOptimizer.map(([name, o]) => el("tr", {},
      el("td", { text: name }), el("td", { className: "num", text: `#${o.trial}` }),
      el("td", { className: "num", text: LR.fmtLr(o.lr) }),
      el("td", { className: "num", text: LR.fmtLoss(o.objective ?? o.val_loss) }))));
    const t = b.transfer;
    $("best-transfer").hidden = !t;
    if (t) {
      setText($("best-transfer"), `lr scaled from ${LR.fmtLr(t.from_lr)} at batch size ${t.from_batch_size} ` +
        `to ${LR.fmtLr(b.lr)} at batch size ${t.to_batch_size} (${t.rule} rule)`);
    }
    // The config to train with: at the scaled rate when another batch size was asked for.
    setText($("best-json"), JSON.stringify(bestConfig(), null, 2));
    setText($("best-curl"), curlSnippet());
    setText($("best-yaml"), yamlSnippet());
  }

  // -- trial table ---------------------------------------------------------------------------
  const rows = new Map(); // number -> {tr, cells}
  const COLS = ["number", "status", "lr", "optimizer", "schedule", "warmup", "val_loss", "best_epoch", "epochs", "duration", "note"];
  const SORT_KEYS = {
    number: (t) => t.number, status: (t) => t.status, lr: (t) => t.config?.lr, optimizer: (t) => t.config?.optimizer,
    schedule: (t) => t.config?.schedule, warmup: (t) => t.config?.warmup_fraction, val_loss: obj,
    best_epoch: (t) => t.best_epoch, epochs: (t) => t.epochs, duration: (t) => LR.seconds(t.started_at, t.finished_at),
  };

  function note(t) {
    const total = rounds();
    if (t.status === "failed") return t.error || "failed";
    const test = isRangeTest(t) ? t.config.range_test : null;
    if (test) return `range test, seed ${test.repeat}: ${LR.fmtLr(t.config.lr)} to ${LR.fmtLr(test.lr_high)} in ${t.epochs} of ${test.num_steps} steps`;
    if (t.status === "diverged") return t.error || `diverged at evaluation ${Math.max(0, t.epochs - 1)}`;
    if (t.status === "pruned") return `stopped early after ${t.epochs}${total ? ` of ${total}` : ""} ${unit()}`;
    if (t.status === "cancelled") return "cancelled";
    return t.attempts > 1 ? `attempt ${t.attempts}` : t.error || "";
  }

  function makeRow(t) {
    const cells = {};
    for (const col of COLS) {
      cells[col] = el("td", { className: ["number", "lr", "warmup", "val_loss", "best_epoch", "epochs", "duration"].includes(col) ? "num" : col === "note" ? "note" : "" });
    }
    cells.badge = el("span");
    cells.status.append(cells.badge);
    const tr = el("tr", { dataset: { trial: String(t.number) } }, COLS.map((c) => cells[c]));
    return { tr, cells };
  }

  function updateRow(r, t, bestNumber) {
    const c = t.config || {}, x = r.cells;
    const cls = `t-${t.status}` + (t.number === bestNumber ? " is-best" : "");
    if (r.tr.className !== cls) r.tr.className = cls;
    setText(x.number, t.number === bestNumber ? `${t.number} \u2605` : t.number);
    LR.setBadge(x.badge, t.status);
    // A range test sweeps a range of rates over steps: its row says so rather than one rate in epochs.
    const test = isRangeTest(t) ? c.range_test : null;
    setText(x.lr, test ? `${LR.fmtLr(c.lr)} \u2192 ${LR.fmtLr(test.lr_high)}` : LR.fmtLr(c.lr));
    x.lr.title = isNum(c.lr) ? String(c.lr) : "";
    setText(x.optimizer, c.optimizer);
    setText(x.schedule, c.schedule);
    setText(x.warmup, LR.fmtNum(c.warmup_fraction));
    setText(x.val_loss, LR.fmtLoss(obj(t)));
    setText(x.best_epoch, t.best_epoch ?? "");
    const total = rounds();
    setText(x.epochs, test ? `${t.epochs} / ${test.num_steps} steps` : total ? `${t.epochs} / ${total}` : t.epochs);
    setText(x.duration, LR.fmtDuration(LR.seconds(t.started_at, t.finished_at)));
    const n = note(t);
    setText(x.note, n);
    if (x.note.title !== n) x.note.title = n;
  }

  function compare(a, b) {
    const get = SORT_KEYS[state.sort.key];
    const va = get(a), vb = get(b);
    const na = va === null || va === undefined, nb = vb === null || vb === undefined;
    if (na || nb) return na && nb ? a.number - b.number : na ? 1 : -1; // missing values last, either way
    if (va < vb) return -state.sort.dir;
    if (va > vb) return state.sort.dir;
    return a.number - b.number;
  }

  /** A big job's table: the page the server sent, in its order, with the pager. */
  function renderPage(tbody, bestNumber) {
    const page = state.page || { items: [], total: 0 };
    for (const r of rows.values()) r.tr.remove();
    rows.clear();
    const frag = document.createDocumentFragment();
    for (const t of page.items) {
      const r = makeRow(t);
      updateRow(r, t, bestNumber);
      rows.set(t.number, r);
      frag.append(r.tr);
    }
    tbody.replaceChildren(frag);
    const first = page.items.length ? state.pageOffset + 1 : 0;
    $("trials-empty").hidden = page.total > 0;
    setText($("trials-shown"), `${first}\u2013${state.pageOffset + page.items.length} of ${page.total}` +
      (state.filter ? ` ${state.filter}` : "") + " trials");
    $("trials-pager").hidden = false;
    $("page-prev").disabled = state.pageOffset === 0;
    $("page-next").disabled = state.pageOffset + page.items.length >= page.total;
    const counts = state.job?.trial_counts || {};
    const select = $("status-filter");
    for (const status of ["queued", "running", "completed", "pruned", "diverged", "failed", "cancelled"]) {
      let opt = select.querySelector(`option[value="${status}"]`);
      if (!opt) { opt = el("option", { value: status }); select.append(opt); }
      setText(opt, `${status} (${counts[status] || 0})`);
    }
  }

  function renderTable() {
    const tbody = document.querySelector("#trials tbody");
    const bestNumber = state.best ? state.best.trial : state.job?.best?.trial;
    if (state.big) { renderPage(tbody, bestNumber); return; }
    const sorted = [...state.trials].sort(compare);
    const counts = {};
    let shown = 0;
    let inOrder = tbody.children.length === sorted.length;
    sorted.forEach((t, i) => {
      let r = rows.get(t.number);
      if (!r) { r = makeRow(t); rows.set(t.number, r); }
      updateRow(r, t, bestNumber);
      counts[t.status] = (counts[t.status] || 0) + 1;
      const visible = !state.filter || t.status === state.filter;
      if (r.tr.hidden === visible) r.tr.hidden = !visible;
      if (visible) shown++;
      if (inOrder && tbody.children[i] !== r.tr) inOrder = false;
    });
    for (const [n, r] of rows) if (!state.byNumber.has(n)) { r.tr.remove(); rows.delete(n); }
    if (!inOrder) { // one move of all rows (a fragment), not one per row
      const frag = document.createDocumentFragment();
      for (const t of sorted) frag.append(rows.get(t.number).tr);
      tbody.append(frag);
    }
    $("trials-empty").hidden = state.trials.length > 0;
    setText($("trials-shown"), state.filter ? `${shown} of ${state.trials.length} shown` : `${state.trials.length} trials`);
    const select = $("status-filter");
    for (const status of ["queued", "running", "completed", "pruned", "diverged", "failed", "cancelled"]) {
      let opt = select.querySelector(`option[value="${status}"]`);
      if (!opt) { opt = el("option", { value: status }); select.append(opt); }
      setText(opt, `${status} (${counts[status] || 0})`);
    }
  }

  /** A big job's table asks the server again (from its first page) when its order or filter changes. */
  function reloadPage() {
    state.pageOffset = 0;
    state.page = null;
    kick();
  }

  function setupTable() {
    for (const th of document.querySelectorAll("#trials th.sortable")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        if (state.big && !SERVER_ORDER[key]) return; // a big job sorts on the server, by these columns only
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        for (const other of document.querySelectorAll("#trials th.sortable")) other.classList.remove("sorted-asc", "sorted-desc");
        th.classList.add(state.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
        th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
        if (state.big) reloadPage(); else if (state.job) renderTable();
      });
    }
    document.querySelector('#trials th[data-sort="number"]').classList.add("sorted-asc");
    $("status-filter").addEventListener("change", (ev) => {
      state.filter = ev.target.value;
      if (state.big) reloadPage(); else if (state.job) renderTable();
    });
    const turn = (delta) => {
      state.pageOffset = Math.max(0, state.pageOffset + delta * config.tablePage);
      state.page = null;
      kick();
    };
    $("page-prev").addEventListener("click", () => turn(-1));
    $("page-next").addEventListener("click", () => turn(1));
  }

  // -- plots ---------------------------------------------------------------------------------
  function layout(extra) {
    return Object.assign({
      font: FONT, margin: { l: 56, r: 16, t: 8, b: 44 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      hovermode: "closest", uirevision: "keep", showlegend: false,
      hoverlabel: { font: { family: FONT.family, size: 12 } },
      legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 1, xanchor: "right" },
    }, extra);
  }
  const axis = (title, extra) => Object.assign({ title: { text: title, standoff: 6 }, gridcolor: "#eef0f3", zeroline: false, automargin: true }, extra);
  function minMax(values) { // no Math.min(...values): 100k arguments overflow the stack
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (isNum(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }
  /** Tick positions (log10 units) between lo and hi: decades, or 1-2-5 steps when the span is short. */
  function logTicks(lo, hi) {
    const out = [];
    for (const steps of [[1], [1, 2, 5], [1, 1.5, 2, 3, 5, 7]]) {
      out.length = 0;
      for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k++) {
        for (const m of steps) { const v = k + Math.log10(m); if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v); }
      }
      if (out.length >= 3) return out.slice();
    }
    return out.length >= 2 ? out : [lo, hi];
  }
  /** A log axis where the values are positive and span more than half a decade, else linear. */
  function valueAxis(title, values, mode) {
    const [lo, hi] = minMax(values);
    const span = lo > 0 ? Math.log10(hi / lo) : 0;
    const log = mode === "log" ? lo > 0 : mode === "linear" ? false : lo > 0 && span > 0.5;
    if (!log) return axis(title, { type: "linear", tickformat: "~g" });
    return axis(title, { type: "log", tickformat: "~g", dtick: span > 2.5 ? 1 : span > 0.6 ? "D2" : undefined });
  }
  function epochAxis() {
    if (stepJob()) return axis("step", { rangemode: "tozero" });
    const epochs = state.job?.spec?.epochs || 0;
    return axis("epoch", { rangemode: "tozero", dtick: epochs && epochs <= 12 ? 1 : undefined, tick0: 0 });
  }

  function placeholder(div, text) {
    if (div.dataset.placeholder === text) return;
    if (div.classList.contains("js-plotly-plot")) Plotly.purge(div);
    div.replaceChildren(el("div", { className: "placeholder", text }));
    div.dataset.placeholder = text;
  }
  function draw(div, traces, lay) {
    if (div.dataset.placeholder) { div.replaceChildren(); delete div.dataset.placeholder; }
    Plotly.react(div, traces, lay, PLOT_CONFIG);
  }

  /** The trials that train (a range test's config and rows are a sweep, drawn by plotFinder). */

  function lrRange() {
    const logs = trained().map((t) => t.config?.lr).filter((x) => isNum(x) && x > 0).map(Math.log10);
    if (!logs.length) return [0, 1];
    let [lo, hi] = minMax(logs);
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    return [lo, hi];
  }

  /** Per-epoch curves of `key` ("val", "train", "lr"): one trace per trial, or per lr band for big jobs. */
  function curveTraces(key, yName, withEnds) {
    const [lo, hi] = lrRange();
    const pos = (t) => (Math.log10(t.config?.lr) - lo) / (hi - lo);
    const withData = trained().filter((t) => (state.curves.get(t.number)?.n || 0) > 0);
    const groups = new Map();
    const perTrial = withData.length <= MAX_TRIAL_TRACES;
    for (const t of withData) {
      const g = perTrial ? t.number : Math.min(LR_BANDS - 1, Math.floor(pos(t) * LR_BANDS));
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(t);
    }
    const traces = [];
    const ends = { diverged: { x: [], y: [], text: [] }, pruned: { x: [], y: [], text: [] } };
    const values = [], steady = []; // steady: the values of trials that did not diverge
    // Short runs: show the points too (3 epochs read better as dots on segments than as bare kinks).
    const markers = (rounds() || 99) <= 12 && withData.length <= MAX_TRIAL_TRACES;
    const xName = stepJob() ? "step" : "epoch";
    for (const [g, trials] of groups) {
      const x = [], y = [], text = [];
      for (const t of trials) {
        const c = state.curves.get(t.number), label = describe(t);
        if (x.length) { x.push(null); y.push(null); text.push(""); }
        let last = -1;
        const at = (e) => (stepJob() && isNum(c.step[e]) ? c.step[e] : e);  // a step job's x is its step
        for (let e = 0; e < c.n; e++) {
          x.push(at(e)); y.push(c[key][e]); text.push(label);
          if (isNum(c[key][e])) { values.push(c[key][e]); if (t.status !== "diverged") steady.push(c[key][e]); last = e; }
        }
        if (withEnds && ends[t.status] && last >= 0) { ends[t.status].x.push(at(last)); ends[t.status].y.push(c[key][last]); ends[t.status].text.push(label); }
      }
      const color = scaleColor(perTrial ? pos(trials[0]) : (g + 0.5) / LR_BANDS);
      traces.push({ type: "scatter", mode: markers ? "lines+markers" : "lines", x, y, text, line: { color, width: 1.6 },
                    marker: { size: 4, color }, connectgaps: false,
                    hovertemplate: `%{text}<br>${xName} %{x}<br>${yName} %{y:.5g}<extra></extra>`, showlegend: false,
                    name: perTrial ? `#${trials[0].number}` : `lr band ${g}` });
    }
    traces.push({ type: "scatter", mode: "markers", x: ends.diverged.x, y: ends.diverged.y, text: ends.diverged.text,
                  name: "diverged", showlegend: true, cliponaxis: false, marker: { symbol: "x", size: 9, color: STATUS_COLOR.diverged },
                  hovertemplate: `%{text}<br>last finite value at ${xName} %{x}<extra>diverged</extra>` });
    traces.push({ type: "scatter", mode: "markers", x: ends.pruned.x, y: ends.pruned.y, text: ends.pruned.text,
                  name: "pruned", showlegend: true, marker: { symbol: "diamond", size: 8, color: STATUS_COLOR.pruned },
                  hovertemplate: `%{text}<br>stopped at ${xName} %{x}<extra>pruned</extra>` });
    // The color scale, as a colorbar (an invisible point carries it).
    traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], hoverinfo: "skip", showlegend: false,
                  marker: { color: [lo], cmin: lo, cmax: hi, colorscale: LR_SCALE, showscale: true,
                            colorbar: { title: { text: "lr", side: "right" }, thickness: 10, len: 0.9, outlinewidth: 0,
                                        tickvals: logTicks(lo, hi), ticktext: logTicks(lo, hi).map((v) => LR.fmtLr(10 ** v)) } } });
    return { traces, values, steady, ends, legend: ends.diverged.x.length + ends.pruned.x.length > 0 };
  }

  /** A big job's curves: per band of learning rates, the median over its trials at each
   *  evaluation, and the band from the 10th to the 90th percentile shaded. */
  function plotBands(divId, key, yName, yLog) {
    const div = $(divId);
    const bands = state.summary?.bands;
    const items = (bands?.items || []).filter((b) => b.epoch.length);
    if (!items.length) { placeholder(div, `No ${unit()} yet.`); return; }
    const [lo, hi] = [Math.log10(bands.lo), Math.log10(bands.hi)];
    const every = stepJob() ? state.job.spec.eval_every || 1 : 1;
    const xName = stepJob() ? "step" : "epoch";
    const traces = [], values = [];
    for (const b of items) {
      const x = b.epoch.map((e) => (stepJob() ? (e + 1) * every : e));
      const s = b[key];
      const color = scaleColor((b.band + 0.5) / LR_BANDS);
      const label = `lr ${LR.fmtLr(b.lo)} to ${LR.fmtLr(b.hi)} (${b.trials} trials)`;
      traces.push({ type: "scatter", mode: "lines", x: x.concat([...x].reverse()), y: s.p90.concat([...s.p10].reverse()),
                    fill: "toself", fillcolor: color.replace("rgb", "rgba").replace(")", ",0.12)"), line: { width: 0 },
                    hoverinfo: "skip", showlegend: false });
      traces.push({ type: "scatter", mode: "lines", x, y: s.p50, line: { color, width: 2 }, name: esc(label), showlegend: false,
                    hovertemplate: `${esc(label)}<br>${xName} %{x}<br>median ${yName} %{y:.5g}<extra></extra>` });
      for (const v of s.p50) if (isNum(v)) values.push(v);
    }
    traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], hoverinfo: "skip", showlegend: false,
                  marker: { color: [lo], cmin: lo, cmax: hi, colorscale: LR_SCALE, showscale: true,
                            colorbar: { title: { text: "lr", side: "right" }, thickness: 10, len: 0.9, outlinewidth: 0,
                                        tickvals: logTicks(lo, hi), ticktext: logTicks(lo, hi).map((v) => LR.fmtLr(10 ** v)) } } });
    draw(div, traces, layout({ xaxis: epochAxis(), yaxis: valueAxis(yName, values, yLog) }));
  }

  function renderSummaryNote() {
    const note = $("summary-note"), sum = state.summary;
    note.hidden = !state.big || !sum;
    if (note.hidden) return;
    setText(note, `${sum.trials} trials: ` + (sum.sampled
      ? `the plots of single trials show ${sum.points.number.length} of them (the best, some diverged and an even spread of the rest); `
      : "") + `the curves are the median of each band of learning rates, with the 10th to 90th percentile shaded.`);
  }

  /** Markers above the top edge sit on it (the arrays are the trace's own: changed in place). */
  function pinAbove(points, edge) {
    points.y.forEach((v, i) => {
      if (v > edge) { points.y[i] = edge; points.text[i] += ` \u2014 ${LR.fmtLoss(v)}, above the plot`; }
    });
  }

  function plotCurves(divId, key, yName, yLog) {
    const div = $(divId);
    const losses = key !== "lr";
    const { traces, values, steady, ends, legend } = curveTraces(key, yName, losses);
    if (!values.length) { placeholder(div, `No ${unit()} yet.`); return; }
    const yaxis = valueAxis(yName, values, yLog);
    if (losses && steady.length) {
      // Diverged runs reach huge losses: frame the trials that did not diverge, and pin the diverged
      // trials' end markers to the top edge (their hover still tells the real value).
      const [lo, hi] = minMax(steady), [, top] = minMax(values);
      if (top > hi * 1.5) {
        if (yaxis.type === "log") {
          yaxis.range = [Math.log10(lo) - 0.05 * Math.log10(hi / lo || 10), Math.log10(hi) + 0.1 * Math.log10(hi / lo || 10)];
          const edge = 10 ** yaxis.range[1];
          pinAbove(ends.diverged, edge);
        } else {
          yaxis.range = [lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo || 1)];
          pinAbove(ends.diverged, yaxis.range[1]);
        }
        const span = yaxis.type === "log" ? Math.log10(hi / lo) : 0;
        if (yaxis.type === "log") yaxis.dtick = span > 2.5 ? 1 : span > 0.6 ? "D2" : undefined;
      }
    }
    draw(div, traces, layout({ showlegend: legend, xaxis: epochAxis(), yaxis }));
  }

  function plotLrLoss() {
    const div = $("plot-lr-loss");
    const kind = state.colorBy;
    const pts = trained().filter((t) => isNum(t.config?.lr));
    const { metric } = objective();
    const withLoss = pts.filter((t) => isNum(obj(t)));
    // Diverged trials say something about their rate (too high): pinned to the top edge. A failed
    // trial's error (a bug, a missing file) says nothing about its rate: it is not drawn.
    const lost = pts.filter((t) => !isNum(obj(t)) && t.status === "diverged");
    if (!withLoss.length && !lost.length) { placeholder(div, `No trial has a ${metric} yet.`); return; }
    const names = [...new Set(pts.map((t) => t.config[kind]))];
    const traces = names.map((name) => {
      const ts = withLoss.filter((t) => t.config[kind] === name);
      return { type: "scatter", mode: "markers", name: esc(name), x: ts.map((t) => t.config.lr), y: ts.map(obj),
               text: ts.map(describe), hovertemplate: `%{text}<br>lr %{x:.4g}<br>best ${esc(metric)} %{y:.5g}<extra></extra>`,
               marker: { size: 10, color: groupColor(kind, name, names), opacity: 0.85, line: { width: 1, color: "#fff" },
                         symbol: ts.map((t) => STATUS_SYMBOL[t.status] || "circle") } };
    });
    traces.push({ type: "scatter", mode: "markers", name: `diverged, no ${esc(metric)}`, yaxis: "y2",
                  x: lost.map((t) => t.config.lr), y: lost.map(() => 0.96), text: lost.map(describe),
                  hovertemplate: `%{text}<br>lr %{x:.4g}<br>no finite ${esc(metric)}<extra></extra>`,
                  marker: { symbol: "x", size: 10, color: STATUS_COLOR.diverged } });
    draw(div, traces, layout({
      showlegend: true, margin: { l: 56, r: 16, t: 30, b: 44 },
      xaxis: valueAxis("learning rate (log scale)", pts.map((t) => t.config.lr), "log"),
      yaxis: valueAxis(`best ${esc(metric)}`, withLoss.map(obj)),
      yaxis2: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
    }));
  }

  /** The classic finder plot: loss against the rate on a log axis, per optimizer, each seed's batch
   *  losses as faint dots and their smoothing as a line, the suggestion as a dashed vertical line. */
  function plotFinder() {
    const card = $("finder-card");
    card.hidden = !isFinderJob();
    if (card.hidden) return;
    const div = $("plot-finder");
    const items = (state.finder || []).filter((f) => f.curves.length);
    if (!items.length) { placeholder(div, "No range test has finished yet."); return; }
    const names = items.map((f) => f.optimizer);
    const traces = [], shapes = [], annotations = [], smoothed = [], starts = [];
    for (const f of items) {
      const color = groupColor("optimizer", f.optimizer, names);
      f.curves.forEach((c, i) => {
        const label = `${esc(f.optimizer)}, seed ${c.repeat} (trial #${c.trial})`;
        traces.push({ type: "scatter", mode: "markers", x: c.lrs, y: c.losses, name: label, showlegend: false,
                      marker: { size: 3, color, opacity: 0.3 }, hovertemplate: `${label}<br>lr %{x:.3g}<br>batch loss %{y:.4g}<extra></extra>` });
        traces.push({ type: "scatter", mode: "lines", x: c.lrs, y: c.smoothed, name: esc(f.optimizer), legendgroup: f.optimizer,
                      showlegend: i === 0, line: { color, width: 2 }, hovertemplate: `${label}<br>lr %{x:.3g}<br>smoothed %{y:.4g}<extra></extra>` });
        smoothed.push(...c.smoothed);
        if (c.smoothed.length) starts.push(c.smoothed[0]);
      });
      if (f.suggestion) {
        const lr = f.suggestion.lr;
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: lr, x1: lr, y0: 0, y1: 1, line: { color, width: 1.5, dash: "dash" } });
        // Labels on rows of their own, so close suggestions do not overprint each other.
        annotations.push({ xref: "x", yref: "paper", x: Math.log10(lr), y: 1 + 0.07 * annotations.length, yanchor: "bottom",
                           showarrow: false, text: `${esc(f.optimizer)} ${LR.fmtLr(lr)}`, font: { color, size: 11 } });
      }
    }
    // The y range: from the lowest smoothed loss to a little above where the tests started; the
    // last batches of a test blow up by design and would flatten everything else.
    const lo = minMax(smoothed)[0], hi = Math.max(...starts);
    const pad = (hi - lo) * 0.15 || 0.1;
    draw(div, traces, layout({ showlegend: true, shapes, annotations, margin: { l: 56, r: 16, t: 24 + 16 * annotations.length, b: 70 },
      legend: { orientation: "h", x: 1, xanchor: "right", y: -0.3, yanchor: "top" },
      xaxis: axis("learning rate (log scale)", { type: "log", tickformat: "~g", dtick: 1 }),
      yaxis: axis("training loss", { range: [lo - pad, hi + pad] }) }));
    div.dataset.suggestions = JSON.stringify(Object.fromEntries(items.filter((f) => f.suggestion).map((f) => [f.optimizer, f.suggestion.lr])));
  }

  /** Each member's rate as a step line over the evaluations, exploits marked, the best's ancestry bold. */
  function plotPopulation() {
    const card = $("population-card");
    card.hidden = !isPopulationJob();
    if (card.hidden) return;
    const div = $("plot-population");
    const members = state.population?.members || [];
    if (!members.length) { placeholder(div, "No member has started yet."); return; }
    const traces = [];
    const unit = stepJob() ? state.job.spec.eval_every || 1 : 1;
    for (const m of members) {
      const x = [], y = [];
      for (const s of m.segments) { x.push(s.start * unit, s.stop * unit); y.push(s.lr, s.lr); }
      traces.push({ type: "scatter", mode: "lines", x, y, name: `member ${m.member}`, line: { width: 1.5 },
                    hovertemplate: `member ${m.member}<br>%{x}: lr %{y:.3g}<extra></extra>` });
    }
    const ex = state.population.exploits || [];
    if (ex.length) {
      traces.push({ type: "scatter", mode: "markers", name: "exploit", x: ex.map((e) => e.at * unit), y: ex.map((e) => e.lr_after),
                    marker: { symbol: "diamond", size: 9, color: "#d97706" },
                    text: ex.map((e) => `member ${e.member} copied member ${e.from_member} (trial #${e.from_trial})<br>lr ${LR.fmtLr(e.lr_before)} → ${LR.fmtLr(e.lr_after)}`),
                    hovertemplate: "%{text}<extra></extra>" });
    }
    const path = state.best?.trajectory || [];
    if (path.length) {
      const x = [], y = [];
      for (const s of path) { x.push(s.start * unit, s.stop * unit); y.push(s.lr, s.lr); }
      traces.push({ type: "scatter", mode: "lines", x, y, name: "best's ancestry", line: { width: 4, color: "#111827" },
                    hovertemplate: "best's ancestry<br>%{x}: lr %{y:.3g}<extra></extra>" });
    }
    draw(div, traces, layout({ showlegend: true, xaxis: axis(stepJob() ? "step" : "epoch", { rangemode: "tozero" }),
                               yaxis: axis("learning rate (log scale)", { type: "log", tickformat: "~g" }) }));
  }

  function plotBestSoFar() {
    const div = $("plot-best-so-far");
    const { metric, max } = objective();
    const ts = trained().filter((t) => isNum(obj(t))).sort((a, b) => a.number - b.number);
    if (!ts.length) { placeholder(div, `No trial has a ${metric} yet.`); return; }
    let x = [], y = [];
    let best = max ? -Infinity : Infinity;
    for (const t of ts) { best = max ? Math.max(best, obj(t)) : Math.min(best, obj(t)); x.push(t.number); y.push(best); }
    if (state.big) ({ x, y } = state.summary.best_so_far); // over every trial, not the sample
    const traces = [
      { type: "scatter", mode: "markers", name: "trial", x: ts.map((t) => t.number), y: ts.map(obj),
        text: ts.map(describe), hovertemplate: `%{text}<br>${esc(metric)} %{y:.5g}<extra></extra>`,
        marker: { size: 7, color: ts.map((t) => STATUS_COLOR[t.status] || "#9ca3af"), opacity: 0.7,
                  symbol: ts.map((t) => STATUS_SYMBOL[t.status] || "circle") } },
      { type: "scatter", mode: "lines", name: "best so far", x, y, line: { shape: "hv", color: "#4f46e5", width: 2.5 },
        hovertemplate: "best so far after trial %{x}: %{y:.5g}<extra></extra>" },
    ];
    draw(div, traces, layout({ showlegend: true, xaxis: axis("trial number", { rangemode: "tozero" }),
                               yaxis: valueAxis(esc(metric), ts.map(obj)) }));
  }

  /** Parallel coordinates, config -> val_loss, drawn in SVG (no WebGL: fast and available everywhere). One
   *  polyline per trial through normalized axes; colored by val_loss in bands; the best trial on top. */
  function plotParcoords() {
    const div = $("plot-parcoords");
    // Diverged trials are left out: their loss says where training broke, not how good the config is.
    const pool = state.big ? state.parcoords : trained();
    const ts = pool.filter((t) => isNum(t.val_loss) && isNum(t.config?.lr) && t.config.lr > 0 && t.status !== "diverged");
    if (!ts.length) { placeholder(div, "No trial has a validation loss yet."); return; }
    const [lmin, lmax] = minMax(ts.map((t) => t.val_loss));
    const logLoss = lmin > 0 && lmax / lmin > 10;
    const numeric = (label, get, fmt, log) => {
      const vals = ts.map(get);
      let [lo, hi] = minMax(vals);
      if (hi - lo < 1e-12) { lo -= log ? 0.25 : 0.5; hi += log ? 0.25 : 0.5; }
      const ticks = log ? logTicks(lo, hi) : [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * (hi - lo));
      return { label, get, lo, hi, ticks: ticks.map((v) => [v, fmt(log ? 10 ** v : v)]) };
    };
    const categorical = (label, key) => {
      const names = [...new Set(ts.map((t) => String(t.config[key])))].sort();
      return { label, get: (t) => names.indexOf(String(t.config[key])), lo: -0.5, hi: names.length - 0.5,
               ticks: names.map((n, i) => [i, n]) };
    };
    const axes = [
      numeric("lr (log)", (t) => Math.log10(t.config.lr), LR.fmtLr, true),
      categorical("optimizer", "optimizer"),
      categorical("schedule", "schedule"),
      numeric("warmup", (t) => (isNum(t.config.warmup_fraction) ? t.config.warmup_fraction : 0), LR.fmtNum, false),
      numeric(logLoss ? "val_loss (log)" : "val_loss", (t) => (logLoss ? Math.log10(t.val_loss) : t.val_loss), LR.fmtLoss, logLoss),
    ];
    const norm = (a, v) => (v - a.lo) / (a.hi - a.lo);
    const lossAxis = axes[axes.length - 1];
    const bandOf = (t) => Math.min(PC_BANDS - 1, Math.floor(norm(lossAxis, lossAxis.get(t)) * PC_BANDS));
    const bestNumber = state.best ? state.best.trial : null;
    const bands = new Map();
    for (const t of ts) {
      const key = t.number === bestNumber ? "best" : bandOf(t);
      if (!bands.has(key)) bands.set(key, []);
      bands.get(key).push(t);
    }
    const order = [...bands.keys()].sort((a, b) => (a === "best" ? 1 : b === "best" ? -1 : b - a)); // worst first
    const traces = order.map((key) => {
      const x = [], y = [], text = [];
      for (const t of bands.get(key)) {
        if (x.length) { x.push(null); y.push(null); text.push(""); }
        const label = `${describe(t)}<br>val_loss ${LR.fmtLoss(t.val_loss)}`;
        axes.forEach((a, i) => { x.push(i); y.push(norm(a, a.get(t))); text.push(label); });
      }
      const best = key === "best", many = ts.length > MAX_TRIAL_TRACES;
      const color = best ? "#111827" : lossColor((key + 0.5) / PC_BANDS);
      return { type: "scatter", mode: best || !many ? "lines+markers" : "lines", x, y, text, name: best ? "best" : `band ${key}`,
               showlegend: best, line: { color, width: best ? 3 : many ? 1 : 1.4 }, marker: { size: best ? 6 : 4, color },
               opacity: best ? 1 : many ? 0.5 : 0.75,
               hovertemplate: "%{text}<extra></extra>" };
    });
    const [cmin, cmax] = [lossAxis.lo, lossAxis.hi];
    traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], hoverinfo: "skip", showlegend: false,
                  marker: { color: [cmin], cmin, cmax, colorscale: LOSS_SCALE, showscale: true,
                            colorbar: { title: { text: "val_loss", side: "right" }, thickness: 10, len: 0.9, outlinewidth: 0,
                                        tickvals: lossAxis.ticks.map(([v]) => v), ticktext: lossAxis.ticks.map(([, l]) => l) } } });
    const shapes = axes.map((_, i) => ({ type: "line", x0: i, x1: i, y0: 0, y1: 1, line: { color: "#9ca3af", width: 1 }, layer: "below" }));
    const annotations = [];
    axes.forEach((a, i) => {
      annotations.push({ x: i, y: 1.03, text: `<b>${esc(a.label)}</b>`, showarrow: false, yanchor: "bottom", font: { size: 12 } });
      for (const [v, label] of a.ticks) {
        annotations.push({ x: i, y: norm(a, v), text: esc(label), showarrow: false, xanchor: "right", xshift: -5,
                           font: { size: 10, color: "#4b5563" }, bgcolor: "rgba(255,255,255,0.7)" });
      }
    });
    draw(div, traces, layout({
      showlegend: true, margin: { l: 70, r: 20, t: 24, b: 10 }, shapes, annotations,
      xaxis: { visible: false, range: [-0.45, axes.length - 0.85], fixedrange: true },
      yaxis: { visible: false, range: [-0.04, 1.1], fixedrange: true },
      legend: { orientation: "h", x: 1, xanchor: "right", y: -0.02, yanchor: "top" },
    }));
  }

  /** Redraw the plots when their data changed; big jobs redraw less often than small ones. */
  function renderPlots(force) {
    if (typeof Plotly === "undefined") return; // still loading: drawn once it is (below)
    const changed = state.plotsDirty || state.dataVersion !== state.plottedVersion;
    if (!changed) return;
    const now = performance.now();
    // Stay responsive: redraws take at most about a third of the time (big jobs redraw less often).
    if (!force && !state.plotsDirty && now - state.lastPlotAt < state.plotCost * 2) return;
    state.plottedVersion = state.dataVersion;
    state.plotsDirty = false;
    const t0 = performance.now();
    state.plotCosts = {};
    const timed = (name, fn) => { const t = performance.now(); fn(); state.plotCosts[name] = Math.round(performance.now() - t); };
    timed("finder", plotFinder);
    timed("population", plotPopulation);
    timed("lr-loss", plotLrLoss);
    const curves = state.big ? plotBands : plotCurves;
    renderSummaryNote();
    timed("val", () => curves("plot-val", "val", esc(objective().metric)));
    timed("train", () => curves("plot-train", "train", "train_loss"));
    timed("lr-traj", () => curves("plot-lr-traj", "lr", "lr", state.lrAxis));
    timed("best-so-far", plotBestSoFar);
    timed("parcoords", plotParcoords);
    state.lastPlotAt = performance.now();
    const cost = state.lastPlotAt - t0;
    // A moving average; the first draw (Plotly setting itself up) counts for little.
    state.plotCost = state.plotCost ? 0.7 * state.plotCost + 0.3 * cost : cost / 4;
  }

  function setupToggles() {
    const seg = (attr, apply) => {
      const buttons = document.querySelectorAll(`[${attr}]`);
      for (const b of buttons) {
        b.addEventListener("click", () => {
          for (const o of buttons) { o.classList.toggle("on", o === b); o.setAttribute("aria-pressed", String(o === b)); }
          apply(b.getAttribute(attr));
          state.plotsDirty = true;
          if (state.job) renderPlots(true);
        });
      }
    };
    seg("data-color-by", (v) => { state.colorBy = v; });
    seg("data-lr-axis", (v) => { state.lrAxis = v; });
  }

  // -- start ---------------------------------------------------------------------------------
  setupCancel();
  LR.copyButton($("copy-json"), () => JSON.stringify(state.best ? bestConfig() : {}, null, 2));
  $("best-batch").addEventListener("change", rescaleBest);
  LR.copyButton($("copy-curl"), curlSnippet);
  LR.copyButton($("copy-yaml"), yamlSnippet);
  setupTable();
  setupToggles();
  const kick = LR.poll(tick, (done) => (done ? null : 1000));
  // Plotly loads after this script (the first data arrives meanwhile) and before the document is
  // loaded: draw then what has arrived.
  // Plotly is parsed after this script: draw what has arrived meanwhile (a big job's plots need its
  // summary, which may still be on its way while the job itself has come).
  const plottable = () => state.job && (!state.big || state.summary);
  document.addEventListener("DOMContentLoaded", () => { if (plottable()) { state.plotsDirty = true; renderPlots(true); } });
  window.lrsearchJob = state; // for debugging in the browser console (and the tests)
})();
