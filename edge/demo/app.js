// The demo page: upload an image, ask, and render the runtime's events as they stream in.
// Model output is only ever inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { imageId: null, info: null, busy: false, stream: null };
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

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    const info = await r.json();
    state.info = info;
    const sel = info.selection || {};
    const parts = [`bundle ${info.bundle}`, `profile ${info.profile}`];
    if (sel.backend) {
      const quants = Object.entries(sel.quants || {}).map(([k, v]) => k + " " + v).join(", ");
      parts.push(`${sel.backend} (${quants})`);
    }
    parts.push(`${info.threads} threads`, info.residency,
               `RSS ${fmt(info.memory.rss_mb, 0)} MB, ${fmt(info.memory.system_available_mb / 1024, 1)} GB free`);
    $("device-info").textContent = parts.join(" · ");
    const d = info.defaults;
    $("thinking").checked = d.thinking;
    $("hint").checked = d.hint;
    $("thinking-budget").value = d.thinking_budget;
    $("extraction-budget").value = d.extraction_budget;
    if (d.deadline_s) $("deadline").value = d.deadline_s;
    if (info.example) $("example-button").hidden = false;
  } catch (e) {
    showError("cannot reach the demo server: " + e);
  }
}

// ---- images ----------------------------------------------------------------------------

async function useImage(blob, label) {
  showError("");
  state.imageId = null;
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (blob.size > limit) {
    $("image-status").textContent = "";
    showError(`the image is ${humanBytes(blob.size)}; the limit is ${humanBytes(limit)}`);
    return;
  }
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("image-status").textContent = `uploading ${label}…`;
  try {
    const r = await fetch("/api/image", {
      method: "POST",
      headers: { "Content-Type": blob.type || "application/octet-stream" },
      body: blob,
    });
    const body = await r.json();
    if (!r.ok) {
      $("image-status").textContent = "";
      preview.hidden = true;
      $("drop-hint").hidden = false;
      showError(body.error || `upload failed (${r.status})`);
      return;
    }
    state.imageId = body.id;
    $("image-status").textContent = `${label}: ${body.width}×${body.height}, ${humanBytes(body.bytes)}`;
  } catch (e) {
    $("image-status").textContent = "";
    showError("upload failed: " + e);
  }
}

async function useExample() {
  try {
    const r = await fetch("/api/example-image");
    if (!r.ok) throw new Error(`status ${r.status}`);
    $("question").value = state.info.example.question;
    await useImage(await r.blob(), "example");
  } catch (e) {
    showError("cannot load the example: " + e.message);
  }
}

function onFileInput(ev) {
  const file = ev.target.files && ev.target.files[0];
  if (file) useImage(file, file.name);
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

function handleEvent(ev) {
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
    case "token": {
      const p = panelFor(ev.stage);
      if (p) p.querySelector(".text").textContent += ev.text;
      break;
    }
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
    case "done": {
      const r = ev.result;
      $("answer").textContent = r.answer ?? "(no answer found)";
      $("summary").textContent =
        `total ${fmt(r.seconds, 2)} s · peak RSS ${fmt(r.peak_rss_mb, 0)} MB · ` +
        `${r.residency} · ${Object.values(r.backend).join(", ")} · ` +
        `system free ${fmt(ev.memory.system_available_mb / 1024, 1)} GB`;
      $("run-status").textContent = `done in ${fmt(r.seconds, 2)} s`;
      break;
    }
    case "error":
      showError(ev.error);
      break;
  }
}

async function ask(e) {
  e.preventDefault();
  if (state.busy) return;
  showError("");
  if (!state.imageId) {
    showError("no image: pick, drop or take a photo first");
    return;
  }
  const options = $("options").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const intOrNull = (v) => (v === "" ? null : Number.parseInt(v, 10));
  const req = {
    image: state.imageId,
    question: $("question").value,
    thinking: $("thinking").checked,
    hint: $("hint").checked,
    thinking_budget: intOrNull($("thinking-budget").value),
    extraction_budget: intOrNull($("extraction-budget").value),
    deadline_s: $("deadline").value === "" ? null : Number($("deadline").value),
  };
  if (options.length) req.options = options;
  resetOutput();
  state.busy = true;
  $("ask").disabled = true;
  $("run-status").textContent = "sending…";
  try {
    const r = await fetch("/api/ask", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      showError(body.error || `request failed (${r.status})`);
      $("run-status").textContent = "";
      return;
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) handleEvent(JSON.parse(line));
      }
    }
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
  setupDrop();
  setupCamera();
  $("ask-form").addEventListener("submit", ask);
  loadInfo();
});
