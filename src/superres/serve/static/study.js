// The blind study page: asks the server for a pair, shows it, records the choice and the time taken.
// The page only ever sees opaque pair tokens; which model made which image stays on the server.
"use strict";

const $ = (s) => document.querySelector(s);
let current = null; // {pair, left, right, lr}
let shownAt = null; // performance.now() when both images finished loading
let busy = false;
let mine = 0;
let maxVotes = null; // this study's cap of votes per rater

// The rater is a token the server issues (POST /v1/study/rater); this browser keeps it, so a reload
// continues as the same rater. Ids chosen by the page are not accepted by the server.
const TOKEN_KEY = "superres-study-rater";
let rater = null; // {rater: secret token, id: public id}

async function getRater(renew) {
  if (!renew) {
    try {
      const kept = JSON.parse(localStorage.getItem(TOKEN_KEY) || "null");
      if (kept && kept.rater && kept.id) return kept;
    } catch (_) { /* unreadable: ask for a new one */ }
  }
  const res = await fetch("/v1/study/rater", { method: "POST" });
  const data = await res.json();
  if (!res.ok) throw new Error(data.detail || res.statusText);
  const kept = { rater: data.rater, id: data.id };
  localStorage.setItem(TOKEN_KEY, JSON.stringify(kept));
  return kept;
}

function doneText() {
  return `Done: you have rated the ${maxVotes ?? "maximum number of"} pairs this study asks for. Thank you!`;
}

function setState(state) {
  document.body.dataset.state = state;
}

function loaded(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("image failed to load"));
    img.src = url;
  });
}

async function postJson(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) {
    const err = new Error(data.detail || res.statusText);
    err.code = data.error;
    throw err;
  }
  return data;
}

async function nextPair() {
  setState("loading");
  shownAt = null;
  try {
    current = await postJson("/v1/study/next", { rater: rater.rater });
  } catch (e) {
    if (e.code !== "unknown_rater") throw e;
    rater = await getRater(true); // the server no longer knows this browser's token (a new study)
    document.body.dataset.rater = rater.id;
    current = await postJson("/v1/study/next", { rater: rater.rater });
  }
  const waits = [loaded($("#left"), current.left), loaded($("#right"), current.right)];
  if (current.lr) waits.push(loaded($("#lr"), current.lr));
  await Promise.all(waits);
  const w = $("#left").naturalWidth;
  if (current.lr) $("#lr").style.width = `${Math.min(w, $("#left").clientWidth || w)}px`;
  shownAt = performance.now();
  document.body.dataset.pair = current.pair;
  setState("ready");
}

async function vote(choice) {
  if (busy || !current || shownAt === null) return; // not shown yet: a key press means nothing
  busy = true;
  const ms = Math.round(performance.now() - shownAt);
  try {
    const res = await postJson("/v1/study/vote", { pair: current.pair, choice, ms, rater: rater.rater });
    mine = res.rater_votes;
    $("#progress").textContent = `${mine} vote(s) by you, ${res.votes} in all`;
    document.body.dataset.votes = String(mine);
    $("#message").textContent = "";
    await nextPair();
  } catch (e) {
    $("#message").textContent = e.code === "vote_limit" ? doneText() : `error: ${e.message}`;
    setState(e.code === "vote_limit" ? "done" : "error");
  } finally {
    busy = false;
  }
}

const KEYS = { ArrowLeft: "left", 1: "left", ArrowRight: "right", 2: "right", " ": "same", "=": "same" };

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement && ev.target.type !== "checkbox") return;
  const choice = KEYS[ev.key];
  if (!choice) return;
  ev.preventDefault();
  vote(choice);
});

for (const b of document.querySelectorAll(".buttons button")) {
  b.addEventListener("click", () => vote(b.dataset.choice));
}

async function start() {
  try {
    const res = await fetch("/v1/study");
    if (!res.ok) throw new Error("no study is served here (start the server with --study DIR)");
    const info = await res.json();
    $("#title").textContent = info.title;
    maxVotes = info.max_votes;
    rater = await getRater(false);
    document.body.dataset.rater = rater.id;
    $("#progress").textContent = `${info.models} versions × ${info.images} images; rater ${rater.id}`;
    if (info.show_lr) {
      $("#lr-box").hidden = false;
      $("#show-lr").addEventListener("change", (e) => { $("#lr-figure").hidden = !e.target.checked; });
    }
    await nextPair();
  } catch (e) {
    $("#message").textContent = e.code === "vote_limit" ? doneText() : `error: ${e.message}`;
    setState(e.code === "vote_limit" ? "done" : "error");
  }
}

start();
