// A/B panel of the web page, active only when the server runs with --ab: adds "A/B split" to the model
// choice (the server then picks this browser's sticky version), shows each version's measured share,
// latency, errors and ratings from /v1/ab, and lets the user rate what they got (1-5) with the rating
// token that came with the upload.
"use strict";

(() => {
  const q = (sel) => document.querySelector(sel);
  let panel = null;

  function ensureOption() {
    const select = q("#model");
    if (!select || select.querySelector('option[value=""]') || select.options.length === 0) return;
    const opt = document.createElement("option");
    opt.value = "";
    opt.textContent = "A/B split (the server picks your version)";
    opt.dataset.description = "Requests without a model follow the server's traffic split; you stay on one version.";
    select.prepend(opt);
    select.value = "";
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  }

  function render(data) {
    const body = panel.querySelector("tbody");
    body.replaceChildren();
    const total = data.versions.reduce((n, v) => n + v.requests + v.jobs, 0);
    for (const v of data.versions) {
      const tr = document.createElement("tr");
      tr.dataset.version = v.name;
      const ms = (x) => (x === null ? "–" : x.toFixed(1));
      cell(tr, v.name + (v.name === data.you ? " (you)" : ""));
      cell(tr, v.model);
      cell(tr, `${(v.share * 100).toFixed(0)}%`);
      cell(tr, total ? `${(((v.requests + v.jobs) / total) * 100).toFixed(1)}%` : "–");
      cell(tr, `${v.requests} / ${v.jobs}`);
      cell(tr, String(v.errors + v.job_errors));
      cell(tr, `${ms(v.p50_ms)} / ${ms(v.p95_ms)}`);
      cell(tr, `${ms(v.job_p50_ms)} / ${ms(v.job_p95_ms)}`);
      cell(tr, v.rating_mean === null ? "–" : `${v.rating_mean.toFixed(2)} (${v.ratings})`);
      body.append(tr);
    }
    panel.dataset.you = data.you || "";
  }

  async function refresh() {
    const res = await fetch("/v1/ab");
    if (!res.ok) return false;
    render(await res.json());
    return true;
  }

  function build() {
    panel = document.createElement("section");
    panel.id = "ab";
    panel.className = "ab";
    panel.setAttribute("aria-label", "A/B test");
    panel.innerHTML =
      "<h2>A/B test</h2>" +
      "<table><thead><tr><th>version</th><th>model</th><th>configured</th><th>observed</th>" +
      "<th>upscales / jobs</th><th>errors</th><th>upscale p50 / p95 ms</th><th>job p50 / p95 ms</th>" +
      "<th>rating</th></tr></thead>" +
      "<tbody></tbody></table>" +
      '<p class="hint">Rate your last result: <span class="stars"></span> <span class="rated"></span></p>';
    const stars = panel.querySelector(".stars");
    for (let r = 1; r <= 5; r++) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "rate";
      b.textContent = String(r);
      b.addEventListener("click", async () => {
        // a rating needs the token of the upload that served this browser its version (app.js keeps it)
        const token = document.body.dataset.ratingToken;
        if (!token) {
          panel.querySelector(".rated").textContent = "upscale an image first, then rate it";
          return;
        }
        const res = await fetch("/v1/ab/rating", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ rating: r, token }),
        });
        const data = await res.json();
        if (res.ok) delete document.body.dataset.ratingToken; // single use: the next upload brings another
        panel.querySelector(".rated").textContent = res.ok ? `thanks (${data.version})` : data.detail;
        refresh();
      });
      stars.append(b);
    }
    q("main").append(panel);
  }

  async function start() {
    const res = await fetch("/v1/ab");
    const data = res.ok ? await res.json() : { enabled: false };
    if (!data.enabled) return; // no split configured: the page stays as it is
    build();
    render(data);
    const select = q("#model");
    ensureOption();
    new MutationObserver(ensureOption).observe(select, { childList: true });
    setInterval(refresh, 3000);
  }

  start();
})();
