/* lrsearch dashboard: the jobs list (updated in place) and the form that submits a job. */
"use strict";

(() => {
  const { el, setText, api, config } = LR;
  const tbody = document.querySelector("#jobs tbody");
  const rows = new Map(); // job id -> the row's nodes
  let kick = () => {};

  // -- the list ------------------------------------------------------------------------------

  function makeRow(job) {
    const link = el("a", { href: `${config.root}/jobs/${job.id}` });
    const badge = el("span");
    const bar = el("div", { className: "bar", "aria-hidden": "true" }, el("span"));
    const progressText = el("span", { className: "progress-text" });
    const cancel = el("button", { type: "button", className: "small danger", text: "Cancel" });
    LR.armCancel(cancel, job.id, { idle: "Cancel", armed: "Confirm cancel" }, () => kick());
    const r = {
      id: el("td", { className: "num", text: job.id }),
      name: el("td", { className: "name" }, link),
      status: el("td", {}, badge),
      progress: el("td", {}, el("div", { className: "progress" }, bar, progressText)),
      bestLr: el("td", { className: "num" }),
      bestLoss: el("td", { className: "num" }),
      created: el("td"),
      actions: el("td", {}, cancel),
    };
    const tr = el("tr", { dataset: { jobId: String(job.id) } }, Object.values(r));
    return Object.assign(r, { tr, link, badge, bar, progressText, cancel });
  }

  function updateRow(r, job) {
    setText(r.link, job.name);
    r.link.title = job.name;
    LR.setBadge(r.badge, job.status);
    const done = LR.finishedCount(job.trial_counts);
    const total = job.total_trials;
    LR.setBar(r.bar, total ? done / total : job.status === "completed" ? 1 : 0);
    setText(r.progressText, `${done} / ${total ?? "?"}`);
    r.progressText.title = Object.entries(job.trial_counts).filter(([, n]) => n).map(([k, n]) => `${k}: ${n}`).join(", ");
    setText(r.bestLr, job.best ? LR.fmtLr(job.best.lr) : "");
    // The best value of the job's objective; named when it is not val_loss.
    const o = job.best?.objective;
    setText(r.bestLoss, !job.best ? "" : !o || o.metric === "val_loss" ? LR.fmtLoss(job.best.val_loss)
      : `${o.metric} ${LR.fmtLoss(o.value)}`);
    setText(r.created, LR.fmtWhen(job.created_at));
    r.created.title = `${LR.fmtTime(job.created_at)} (${LR.fmtAgo(job.created_at)})`;
    const active = !LR.TERMINAL_JOB.includes(job.status);
    r.cancel.hidden = !active;
  }

  async function refresh() {
    const res = await api("/jobs?limit=200");
    if (!res.ok) throw new Error(LR.errorText(res));
    const jobs = res.data.items;
    const seen = new Set();
    jobs.forEach((job, i) => {
      let r = rows.get(job.id);
      if (!r) { r = makeRow(job); rows.set(job.id, r); }
      updateRow(r, job);
      seen.add(job.id);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
    });
    for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
    document.getElementById("jobs-empty").hidden = jobs.length > 0;
    setText(document.getElementById("jobs-total"),
      res.data.total > jobs.length ? `newest ${jobs.length} of ${res.data.total}` : `${res.data.total} in all`);
    return jobs.some((j) => !LR.TERMINAL_JOB.includes(j.status));
  }

  // -- the form ------------------------------------------------------------------------------
  const form = document.getElementById("job-form");
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["name", "workload", "strategy", "seed", "max_trials", "max_concurrent", "epochs",
                  "lr_low", "lr_high", "lr_num", "lr", "optimizers", "schedules", "warmup"];
  const DEFAULT_CHECKED = { optimizers: ["sgd", "adam"], schedules: ["constant", "cosine"] };

  function checkboxes(containerId, names, group) {
    const box = $(containerId);
    for (const name of names) {
      const input = el("input", { type: "checkbox", name: group, value: name });
      input.checked = DEFAULT_CHECKED[group].includes(name);
      box.append(el("label", {}, input, name));
    }
  }

  async function loadWorkloads() {
    const select = $("f-workload");
    const res = await api("/workloads");
    const items = res.ok ? res.data.items : [];
    // A plug-in that failed to load is listed, greyed out, with its load error: the server refuses it.
    for (const w of items) {
      const option = el("option", { value: w.name, text: w.error ? `${w.name} (failed to load)` : w.name,
                                    title: w.error || w.description });
      option.disabled = Boolean(w.error);
      select.append(option);
    }
    const hint = () => {
      const w = items.find((x) => x.name === select.value);
      setText($("workload-hint"), w ? w.error || w.description : "");
    };
    select.addEventListener("change", hint);
    hint();
  }

  const selectedStrategy = () => config.strategies.find((s) => s.name === $("f-strategy").value);

  function setupForm() {
    const strategy = $("f-strategy");
    const order = ["random", "grid", "bayesian"];
    // The form searches a space: strategies that run a list of configs are submitted as YAML or JSON.
    const names = config.strategies.filter((s) => !s.takes_configs).map((s) => s.name)
      .sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
    for (const s of names) strategy.append(el("option", { value: s, text: s }));
    const gridOnly = () => {
      const facts = selectedStrategy();
      $("lr-num-field").hidden = !facts?.grid;
      // A strategy that runs what it plans (a grid's product) takes no budget: a leftover one is refused.
      if (facts && !facts.budget) $("f-max_trials").value = "";
    };
    strategy.addEventListener("change", gridOnly);
    gridOnly();
    checkboxes("f-optimizers", config.optimizers, "optimizers");
    checkboxes("f-schedules", config.schedules, "schedules");
    loadWorkloads();
  }

  /** A number where the text is one; else the text itself, so the server says what is wrong with it. */
  function value(text) {
    const t = text.trim();
    const n = Number(t);
    return t !== "" && Number.isFinite(n) ? n : t;
  }

  function buildSpec() {
    const spec = {};
    const name = $("f-name").value.trim();
    if (name) spec.name = name;
    spec.workload = $("f-workload").value;
    spec.strategy = $("f-strategy").value;
    for (const key of ["max_trials", "max_concurrent", "epochs", "seed"]) {
      const v = $("f-" + key).value;
      if (v.trim() !== "") spec[key] = value(v);
    }
    const lr = { low: value($("f-lr_low").value), high: value($("f-lr_high").value) };
    if (selectedStrategy()?.grid && $("f-lr_num").value.trim() !== "") lr.num = value($("f-lr_num").value);
    const checked = (group) => [...form.querySelectorAll(`input[name=${group}]:checked`)].map((i) => i.value);
    spec.space = { lr, optimizer: checked("optimizers"), schedule: checked("schedules") };
    const warmup = $("f-warmup").value.split(/[,\s]+/).filter(Boolean).map(value);
    if (warmup.length) spec.space.warmup_fraction = { values: warmup };
    return spec;
  }

  /** Which form field a 422's loc ["body", ...] points at; null: the form as a whole. */
  function fieldFor(loc) {
    const path = loc[0] === "body" ? loc.slice(1) : loc;
    const [head, second, third] = path;
    if (head === "space") {
      if (second === "lr") return { low: "lr_low", high: "lr_high", num: "lr_num" }[third] || "lr";
      if (second === "optimizer") return "optimizers";
      if (second === "schedule") return "schedules";
      if (second === "warmup_fraction") return "warmup";
      return null;
    }
    return FIELDS.includes(head) ? head : null;
  }

  function clearErrors() {
    for (const key of [...FIELDS, "form", "raw"]) {
      const p = $("err-" + key);
      if (p) { p.hidden = true; p.textContent = ""; }
      const input = $("f-" + key);
      if (input) input.removeAttribute("aria-invalid");
    }
  }

  function showError(key, message) {
    const p = $("err-" + key);
    p.textContent = p.textContent ? p.textContent + "; " + message : message;
    p.hidden = false;
    const input = $("f-" + key);
    if (input) input.setAttribute("aria-invalid", "true");
  }

  function showValidation(res, rawMode) {
    const detail = res.data && Array.isArray(res.data.detail) ? res.data.detail : null;
    if (!detail) { showError(rawMode ? "raw" : "form", LR.errorText(res)); return; }
    for (const d of detail) {
      const loc = Array.isArray(d.loc) ? d.loc : [];
      const where = loc.filter((p) => p !== "body").join(".");
      const key = rawMode ? null : fieldFor(loc);
      if (key && !$("f-" + key)?.closest("[hidden]")) showError(key, d.msg);
      else showError(rawMode ? "raw" : "form", where ? `${where}: ${d.msg}` : d.msg);
    }
  }

  async function submit(spec, rawMode, button) {
    clearErrors();
    $("form-ok").hidden = true;
    button.disabled = true;
    try {
      const res = await api("/jobs", { method: "POST", json: spec });
      if (res.ok) {
        const job = res.data;
        const ok = $("form-ok");
        ok.replaceChildren("Submitted ", el("a", { href: `${config.root}/jobs/${job.id}`, text: `#${job.id} ${job.name}` }));
        ok.hidden = false;
        kick();
      } else {
        showValidation(res, rawMode);
        const first = form.querySelector(".field-error:not([hidden]), .form-error:not([hidden])");
        if (first) first.scrollIntoView({ block: "nearest" });
      }
    } catch (err) {
      showError(rawMode ? "raw" : "form", "The service did not answer: " + err.message);
    } finally {
      button.disabled = false;
    }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(buildSpec(), false, $("submit")); });
  $("raw-from-form").addEventListener("click", () => { $("f-raw").value = JSON.stringify(buildSpec(), null, 2); });
  $("raw-submit").addEventListener("click", () => {
    clearErrors();
    let spec;
    try { spec = JSON.parse($("f-raw").value); } catch (err) { showError("raw", "not valid JSON: " + err.message); return; }
    submit(spec, true, $("raw-submit"));
  });

  setupForm();
  kick = LR.poll(refresh, (active) => (active ? 1000 : 4000));
})();
