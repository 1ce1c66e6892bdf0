// superres web page. Plain JS, same-origin requests only (the page's CSP forbids anything else).
// Each file becomes a job: upload with progress (XHR), poll the job's progress, fetch the result as a blob
// for the before/after comparison and the download link. A video goes to /v1/video (an MP4 comes back,
// shown in a player).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const POLL_MS = 300;
let modelScales = {};

function setStatus(text, cls) {
  const el = $("#server-status");
  el.textContent = text;
  el.className = "status " + (cls || "");
}

async function loadModels() {
  try {
    const res = await fetch("/v1/models");
    if (!res.ok) throw new Error(res.status + " " + res.statusText);
    const data = await res.json();
    const select = $("#model");
    select.replaceChildren();
    for (const m of data.models) {
      modelScales[m.name] = m.scale;
      const opt = document.createElement("option");
      opt.value = m.name;
      opt.textContent = m.title ? `${m.name} (x${m.scale || "?"})` : m.name;
      opt.selected = m.name === data.default;
      opt.dataset.description = m.description || "";
      select.append(opt);
    }
    showModelInfo();
    const mp = (n) => (n / 1e6).toFixed(1) + " MP";
    $("#limits").textContent = `Up to ${(data.limits.max_bytes / 1048576).toFixed(0)} MB and ` +
      `${mp(data.limits.max_pixels)} per image; results are kept ${Math.round(data.limits.job_ttl / 60)} min.`;
    const ready = await fetch("/readyz");
    setStatus(ready.ok ? "ready" : "starting…", ready.ok ? "ok" : "");
    if (!ready.ok) setTimeout(loadModels, 1500);
  } catch (err) {
    setStatus("server unreachable: " + err.message, "bad");
    setTimeout(loadModels, 3000);
  }
}

function showModelInfo() {
  const opt = $("#model").selectedOptions[0];
  $("#model-info").textContent = opt ? opt.dataset.description : "";
}

function errorText(xhrOrRes, body) {
  try {
    const j = typeof body === "string" ? JSON.parse(body) : body;
    if (j && j.detail) return j.detail;
  } catch (_) { /* not JSON */ }
  return `HTTP ${xhrOrRes.status}`;
}

function addItem(file) {
  const node = $("#item-template").content.firstElementChild.cloneNode(true);
  $(".name", node).textContent = file.name;
  $("#items").prepend(node);
  return node;
}

function setItem(node, status, text, percent) {
  node.dataset.status = status;
  $(".state", node).textContent = text;
  if (percent !== undefined) $(".bar", node).value = percent;
}

function wireSlider(node) {
  const slider = $(".slider", node);
  const wrap = $(".before-wrap", node);
  const divider = $(".divider", node);
  const update = () => {
    const v = Number(slider.value);
    wrap.style.clipPath = `inset(0 ${100 - v}% 0 0)`;
    divider.style.left = v + "%";
  };
  slider.addEventListener("input", update);
  update();
}

function isVideo(file) {
  return file.type.startsWith("video/") || /\.(mp4|mkv|mov|webm|avi|m4v)$/i.test(file.name);
}

function upload(file, node) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("model", $("#model").value);
    if ($("#scale").value) form.append("outscale", $("#scale").value);
    form.append("format", $("#format").value);
    if ($("#report").checked) form.append("report", "true");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", isVideo(file) ? "/v1/video" : "/v1/jobs");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setItem(node, "uploading", "uploading", (30 * e.loaded) / e.total);
    };
    xhr.onload = () => {
      if (xhr.status !== 202) return reject(new Error(errorText(xhr, xhr.responseText)));
      // with --ab: the single-use token that lets this browser rate the version that served it (ab.js)
      const token = xhr.getResponseHeader("X-Superres-Rating-Token");
      if (token) document.body.dataset.ratingToken = token;
      resolve(JSON.parse(xhr.responseText));
    };
    xhr.onerror = () => reject(new Error("network error"));
    node._abort = () => xhr.abort();
    xhr.send(form);
  });
}

async function poll(job, node) {
  for (;;) {
    const res = await fetch(`/v1/jobs/${job.id}`);
    const body = await res.json();
    if (!res.ok) throw new Error(errorText(res, body));
    if (body.status === "done") return body;
    if (body.status === "failed") throw new Error(body.error ? body.error.detail : "failed");
    if (body.status === "cancelled" || body.status === "deleted") throw new Error("cancelled");
    const pct = 30 + 70 * body.progress;
    setItem(node, body.status, `${body.status} ${Math.round(body.progress * 100)}%`, pct);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function processFile(file) {
  const node = addItem(file);
  let job = null;
  $(".cancel", node).addEventListener("click", async () => {
    if (job) await fetch(`/v1/jobs/${job.id}`, { method: "DELETE" });
    else if (node._abort) node._abort();
    setItem(node, "cancelled", "cancelled");
  });
  try {
    setItem(node, "uploading", "uploading", 0);
    job = await upload(file, node);
    if (node.dataset.status === "cancelled") return;
    const done = await poll(job, node);
    const res = await fetch(done.result_url);
    if (!res.ok) throw new Error(errorText(res, await res.text()));
    const blob = await res.blob();
    const afterUrl = URL.createObjectURL(blob);
    if (done.content_type.startsWith("video/")) {
      const player = document.createElement("video");
      player.src = afterUrl;
      player.controls = true;
      player.className = "result-video";
      $(".compare", node).replaceWith(player);
    } else {
      $(".after", node).src = afterUrl;
      $(".before", node).src = URL.createObjectURL(file);
      $(".compare", node).hidden = false;
      wireSlider(node);
    }
    const link = $(".download", node);
    const ext = done.content_type.split("/")[1].replace("jpeg", "jpg").replace("tiff", "tif");
    link.href = afterUrl;
    link.download = `${file.name.replace(/\.[^.]+$/, "")}_${done.model}.${ext}`;
    link.hidden = false;
    $(".size", node).textContent = `${done.width} × ${done.height} · ${(blob.size / 1024).toFixed(0)} kB`;
    if (done.quality) showQuality(node, done);
    setItem(node, "done", "done", 100);
  } catch (err) {
    if (node.dataset.status !== "cancelled") setItem(node, "failed", "failed: " + err.message);
  }
}

// The quality check's verdict, and the uncertainty heatmap as a toggled overlay on the result.
function showQuality(node, done) {
  const q = done.quality;
  const p = $(".quality", node);
  const num = (v, d) => (v === null || v === undefined ? "n/a" : v.toFixed(d));
  let text = `NIQE ${num(q.niqe, 2)} (bicubic ${num(q.bicubic_niqe, 2)}) · uncertainty mean ` +
    `${num(q.uncertainty_mean, 1)}, p99 ${num(q.uncertainty_p99, 1)} grey levels`;
  if (q.flagged) {
    text = "flagged: " + q.reasons.join("; ") + (q.fallback_used ? ` — ${q.written} sent instead` : "") +
      " · " + text;
  }
  p.textContent = text;
  p.classList.toggle("flagged", !!q.flagged);
  p.hidden = false;
  if (!done.uncertainty_url) return;
  const overlay = $(".uncertainty", node);
  const toggle = $(".show-uncertainty", node);
  overlay.src = done.uncertainty_url;
  $(".overlay-toggle", node).hidden = false;
  toggle.addEventListener("change", () => { overlay.hidden = !toggle.checked; });
}

function handleFiles(files) {
  for (const f of files) processFile(f);
}

function init() {
  const drop = $("#drop");
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => handleFiles(e.dataTransfer.files));
  $("#file").addEventListener("change", (e) => {
    handleFiles(e.target.files);
    e.target.value = "";
  });
  $("#model").addEventListener("change", showModelInfo);
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
