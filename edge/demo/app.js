// The demo page: pick an image, ask, and render the answer as it streams in from the
// server's OpenAI-compatible /v1/chat/completions (SSE). Thinking arrives as
// `reasoning_content` deltas, the answer as `content` deltas, and everything else (focus
// hint, extraction, stage timings, budget events) as `extract_think` events (docs/serve.md).
// Model output is only ever inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, info: null, model: null, busy: false, stream: null, key: "" };
const STAGE_PANELS = { hint: "stage-hint", extraction: "stage-extraction", caption: "stage-extraction",
                       thinking: "stage-thinking", answer: "stage-answer" };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function fmt(x, digits = 2) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "";
}

function humanBytes(n) {
  return n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MB" : Math.round(n / 1024) + " KB";
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

async function errorMessage(r) {
  const body = await r.json().catch(() => ({}));
  return (body.error && body.error.message) || `request failed (${r.status})`;
}

async function loadInfo() {
  try {
    const r = await fetch("/v1/models", { headers: headers(false) });
    if (r.status === 401) {
      $("key-form").hidden = false;
      $("device-info").textContent = "this server needs an API key";
      return;
    }
    if (!r.ok) throw new Error(await errorMessage(r));
    const card = (await r.json()).data[0];
    const info = card.extract_think;
    state.model = card.id;
    state.info = info;
    $("key-form").hidden = true;
    const sel = info.selection || {};
    const parts = [`bundle ${info.bundle}`, `profile ${info.profile}`];
    if (sel.backend) {
      const quants = Object.entries(sel.quants || {}).map(([k, v]) => k + " " + v).join(", ");
      parts.push(`${sel.backend} (${quants})`);
    }
    parts.push(`${info.threads} threads`, info.residency);
    const health = await (await fetch("/health")).json();
    const mem = health.memory;
    parts.push(`RSS ${fmt(mem.rss_mb, 0)} MB, ${fmt(mem.system_available_mb / 1024, 1)} GB free`);
    $("device-info").textContent = parts.join(" · ");
    $("thinking").checked = info.thinking;
    $("hint").checked = info.budgets.hint > 0;
    $("thinking-budget").value = info.budgets.thinking;
    $("extraction-budget").value = info.budgets.extraction;
    if (info.deadline_s) $("deadline").value = info.deadline_s;
    const ex = await fetch("/demo/example");
    if (ex.ok) {
      state.example = await ex.json();
      $("example-button").hidden = false;
    }
  } catch (e) {
    showError("cannot reach the server: " + e.message);
  }
}

// ---- images ----------------------------------------------------------------------------

function readDataURL(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function useImage(blob, label) {
  showError("");
  state.image = null;
  const limit = state.info ? state.info.limits.max_image_bytes : Infinity;
  if (blob.size > limit) {
    $("image-status").textContent = "";
    showError(`the image is ${humanBytes(blob.size)}; the limit is ${humanBytes(limit)}`);
    return;
  }
  showImage(await readDataURL(blob), label, blob.size);
}

function showImage(url, label, size) {
  state.image = url;
  const preview = $("preview");
  preview.onload = () => {
    $("image-status").textContent = `${label}: ${preview.naturalWidth}×${preview.naturalHeight}, ${humanBytes(size)}`;
  };
  preview.onerror = () => {  // the server has the last word; it names what is wrong when asked
    preview.hidden = true;
    $("drop-hint").hidden = false;
    $("image-status").textContent = `${label}: ${humanBytes(size)} (the browser cannot show it)`;
  };
  preview.src = url;
  preview.hidden = false;
  $("drop-hint").hidden = true;
}

function useExample() {
  const ex = state.example;
  $("question").value = ex.question;
  $("options").value = (ex.options || []).join("\n");
  showError("");
  const base64 = ex.image.slice(ex.image.indexOf(",") + 1);
  showImage(ex.image, "example", Math.floor(base64.length * 3 / 4));
}

function onFileInput(ev) {
  const file = ev.target.files && ev.target.files[0];
  if (file) useImage(file, file.name);
  ev.target.value = "";
}

function setupDrop() {
  const zone = $("drop-zone");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files && e.dataTransfer.files[0];
    if (file) useImage(file, file.name);
  });
}

function setupCamera() {
  // getUserMedia needs a secure context (https or localhost); otherwise the file input's
  // `capture` attribute still opens the camera on phones.
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return;
  $("camera-button").hidden = false;
  $("camera-button").addEventListener("click", async () => {
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      $("camera-video").srcObject = state.stream;
      $("camera").hidden = false;
    } catch (e) {
      showError("no camera available: " + e.message);
    }
  });
  const stop = () => {
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    $("camera").hidden = true;
  };
  $("camera-close").addEventListener("click", stop);
  $("snap-button").addEventListener("click", () => {
    const video = $("camera-video");
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => { if (blob) useImage(blob, "camera photo"); stop(); }, "image/jpeg", 0.92);
  });
}

// ---- asking ----------------------------------------------------------------------------

function resetOutput() {
  for (const id of new Set(Object.values(STAGE_PANELS))) {
    const panel = $(id);
    panel.querySelector(".text").textContent = "";
    panel.classList.remove("active", "done");
  }
  $("answer").textContent = "";
  $("timings").querySelector("tbody").textContent = "";
  $("summary").textContent = "";
  $("budget-events").textContent = "";
  $("budget-count").textContent = "0";
}

function panelFor(stage) {
  const id = STAGE_PANELS[stage];
  return id ? $(id) : null;
}

function appendText(stage, text) {
  const p = panelFor(stage);
  if (p) p.querySelector(".text").textContent += text;
}

function addTimingRow(stage, s) {
  const row = document.createElement("tr");
  row.dataset.stage = stage;
  const cells = [stage + (s.cached ? " (cached)" : ""), s.model, s.tokens, s.budget ?? "",
                 fmt(s.seconds, 3), s.tokens_per_s ? fmt(s.tokens_per_s, 1) : "",
                 s.ttft_s ? fmt(s.ttft_s, 3) : "",
                 fmt(s.rss_mb, 0)];
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = String(c);
    row.appendChild(td);
  }
  $("timings").querySelector("tbody").appendChild(row);
}

// one `extract_think` progress event
function handleProgress(ev) {
  switch (ev.type) {
    case "queued":
      $("run-status").textContent = `waiting: ${ev.position} request(s) ahead`;
      break;
    case "started":
      $("run-status").textContent = "running…";
      break;
    case "stage_started": {
      const p = panelFor(ev.stage);
      if (p) p.classList.add("active");
      $("run-status").textContent = `${ev.stage}…`;
      break;
    }
    case "token":
      appendText(ev.stage, ev.text);
      break;
    case "budget": {
      const li = document.createElement("li");
      li.textContent = `${ev.stage} @${ev.position}: ${ev.kind}${ev.detail ? " — " + ev.detail : ""}`;
      $("budget-events").appendChild(li);
      $("budget-count").textContent = String($("budget-events").children.length);
      break;
    }
    case "stage_finished": {
      const p = panelFor(ev.stage);
      if (p) {
        p.classList.remove("active");
        p.classList.add("done");
        if (ev.text != null) p.querySelector(".text").textContent = ev.text;  // authoritative
      }
      addTimingRow(ev.stage, ev.stats);
      break;
    }
  }
}

async function showResult(r, finishReason) {
  $("answer").textContent = r.answer ?? "(no answer found)";
  let free = "";
  try {
    const mem = (await (await fetch("/health")).json()).memory;
    free = ` · system free ${fmt(mem.system_available_mb / 1024, 1)} GB`;
  } catch (e) { /* the summary is complete without it */ }
  $("summary").textContent =
    `total ${fmt(r.seconds, 2)} s · peak RSS ${fmt(r.peak_rss_mb, 0)} MB · ` +
    `${r.residency} · ${Object.values(r.backend).join(", ")}` +
    (finishReason === "length" ? " · a budget forced the answer" : "") + free;
  $("run-status").textContent = `done in ${fmt(r.seconds, 2)} s`;
}

// one SSE data payload (a chat.completion.chunk, or an error object)
function handleChunk(chunk) {
  if (chunk.error) {
    showError(chunk.error.message || "the request failed");
    $("run-status").textContent = "";
    return;
  }
  const extra = chunk.extract_think;
  const choice = chunk.choices && chunk.choices[0];
  if (choice && choice.delta) {
    if (choice.delta.reasoning_content) appendText("thinking", choice.delta.reasoning_content);
    if (choice.delta.content) appendText("answer", choice.delta.content);
  }
  if (extra && extra.type) handleProgress(extra);
  else if (extra) showResult(extra, choice && choice.finish_reason);
}

function questionRequest(options) {
  const intOrNull = (v) => (v === "" ? null : Number.parseInt(v, 10));
  const req = {
    model: state.model,
    stream: true,
    messages: [{ role: "user", content: [
      { type: "text", text: $("question").value },
      { type: "image_url", image_url: { url: state.image } },
    ] }],
    thinking: $("thinking").checked,
    hint: $("hint").checked,
    thinking_budget: intOrNull($("thinking-budget").value),
    extraction_budget: intOrNull($("extraction-budget").value),
    deadline_s: $("deadline").value === "" ? null : Number($("deadline").value),
  };
  if (options.length) req.options = options;
  return req;
}

async function readStream(r) {
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data || data === "[DONE]") continue;
      handleChunk(JSON.parse(data));
    }
  }
}

async function ask(e) {
  e.preventDefault();
  if (state.busy) return;
  showError("");
  if (!state.image) {
    showError("no image: pick, drop or take a photo first");
    return;
  }
  const options = $("options").value.split("\n").map((s) => s.trim()).filter(Boolean);
  resetOutput();
  state.busy = true;
  $("ask").disabled = true;
  $("run-status").textContent = "sending…";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(true), body: JSON.stringify(questionRequest(options)),
    });
    if (!r.ok) {
      showError(await errorMessage(r));
      $("run-status").textContent = "";
      return;
    }
    await readStream(r);
  } catch (err) {
    showError("the request failed: " + err);
  } finally {
    state.busy = false;
    $("ask").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("file-input").addEventListener("change", onFileInput);
  $("capture-input").addEventListener("change", onFileInput);
  $("example-button").addEventListener("click", useExample);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    loadInfo();
  });
  setupDrop();
  setupCamera();
  $("ask-form").addEventListener("submit", ask);
  loadInfo();
});
