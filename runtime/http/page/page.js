// The page's only script: a client of this server's GET /readyz and POST /predict, nothing else.
// No other host, no storage: the image, the answer and the API key live in this tab's memory.
// URLs are relative to the page, so it works behind a proxy that serves the app under a path prefix.

const OUTPUTS = ["mask", "overlay", "probability", "uncertainty"];
const READY_RETRY_MS = 2000;
// The longest the page waits for one /predict answer (a 2-core CPU takes seconds; a GPU milliseconds).
const PREDICT_TIMEOUT_MS = 120000;
const $ = (id) => document.getElementById(id);

const state = {
  ready: false,
  image: null, // {blob, name}
  previewUrl: null,
  resultUrls: [],
  running: false,
  request: null, // the AbortController of the /predict request in flight
};

// ------------------------------------------------------------------------------------------ readiness

async function watchReadiness() {
  let answer;
  try {
    answer = await fetch("readyz", { cache: "no-store" });
  } catch {
    $("model-line").textContent = "The server cannot be reached; retrying…";
    setTimeout(watchReadiness, READY_RETRY_MS);
    return;
  }
  if (!answer.ok) {
    const error = await errorOf(answer);
    $("model-line").textContent =
      error.code === "model_failed" ? "The model failed to load on this server." : "The model is loading…";
    if (error.code !== "model_failed") setTimeout(watchReadiness, READY_RETRY_MS);
    return;
  }
  const ready = await answer.json();
  const model = ready.model;
  $("model-line").textContent = `Model ${model.name} ${model.version} · ${model.precision} · ${ready.provider}`;
  $("demo-banner").hidden = !model.random_weights;
  if (ready.defaults) showDefaults(ready.defaults);
  state.ready = true;
  updateSegmentButton();
}

function showDefaults(defaults) {
  for (const name of ["points", "threshold", "seed"]) {
    if (defaults[name] === undefined) continue;
    $(`default-${name}`).textContent = String(defaults[name]);
    $(name).value = String(defaults[name]);
  }
}

// ------------------------------------------------------------------------------------------ the image

function chooseImage(blob, name) {
  if (!blob) return;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.image = { blob, name: name || "image" };
  state.previewUrl = URL.createObjectURL(blob);
  const preview = $("preview");
  preview.alt = `The chosen image, ${state.image.name}`;
  preview.src = state.previewUrl;
  $("preview-caption").textContent = `${state.image.name} · ${formatBytes(blob.size)}`;
  $("preview-figure").hidden = false;
  $("results").hidden = true;
  showMessage("");
  updateSegmentButton();
}

function imageFrom(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file) return file;
  }
  return null;
}

async function chooseSample() {
  try {
    const answer = await fetch("sample-eye.png");
    if (!answer.ok) throw new Error(String(answer.status));
    chooseImage(await answer.blob(), "sample-eye.png");
  } catch {
    showMessage("The sample image could not be loaded from this server.");
  }
}

function wireInputs() {
  $("file").addEventListener("change", (event) => chooseImage(event.target.files[0], event.target.files[0]?.name));
  $("sample").addEventListener("click", chooseSample);
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = imageFrom(event.dataTransfer?.files);
    if (file) chooseImage(file, file.name);
  });
  document.addEventListener("paste", (event) => {
    const file = imageFrom(event.clipboardData?.items);
    if (!file) return;
    event.preventDefault();
    chooseImage(file, file.name && file.name !== "image.png" ? file.name : "pasted image");
  });
}

// ---------------------------------------------------------------------------------------- segmenting

function updateSegmentButton() {
  $("segment").disabled = !(state.ready && state.image) || state.running;
}

function query() {
  const params = new URLSearchParams({ outputs: OUTPUTS.join(",") });
  for (const name of ["points", "threshold", "seed"]) {
    const value = $(name).value.trim();
    if (value !== "") params.set(name, value);
  }
  return params;
}

function requestHeaders(blob) {
  const type = blob.type && blob.type.startsWith("image/") ? blob.type : "application/octet-stream";
  const headers = { "Content-Type": type, Accept: "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

function startProgress() {
  const started = performance.now();
  $("progress").hidden = false;
  $("cancel").hidden = false;
  const tick = () => ($("elapsed").textContent = `Segmenting… ${((performance.now() - started) / 1000).toFixed(1)} s`);
  tick();
  const timer = setInterval(tick, 100);
  return () => {
    clearInterval(timer);
    $("progress").hidden = true;
    $("cancel").hidden = true;
    return (performance.now() - started) / 1000;
  };
}

// The answer of POST /predict, or an `outcome` string when there is none: "cancelled", "timeout", "offline".
async function postImage(image, controller) {
  const timer = setTimeout(() => controller.abort("timeout"), PREDICT_TIMEOUT_MS);
  try {
    return await fetch(`predict?${query()}`, {
      method: "POST",
      headers: requestHeaders(image.blob),
      body: image.blob,
      signal: controller.signal,
    });
  } catch {
    if (!controller.signal.aborted) return "offline";
    return controller.signal.reason === "timeout" ? "timeout" : "cancelled";
  } finally {
    clearTimeout(timer);
  }
}

const NO_ANSWER = {
  offline: "The server could not be reached. Check the connection and try again.",
  timeout: `The server did not answer within ${PREDICT_TIMEOUT_MS / 1000} s. Try again, or choose a smaller image.`,
  cancelled: "Cancelled.",
};

async function segment(event) {
  event.preventDefault();
  const form = $("settings");
  if (!form.checkValidity()) {
    form.reportValidity();
    return;
  }
  if (!state.image || state.running) return;
  state.running = true;
  state.request = new AbortController();
  updateSegmentButton();
  showMessage("");
  showStatus("");
  const stop = startProgress();
  const image = state.image;
  try {
    const answer = await postImage(image, state.request);
    if (typeof answer === "string") {
      stop();
      if (answer === "cancelled") showStatus(NO_ANSWER.cancelled);
      else showMessage(NO_ANSWER[answer]);
      return;
    }
    if (!answer.ok) {
      stop();
      reportError(answer.status, await errorOf(answer), answer.headers.get("Retry-After"));
      return;
    }
    try {
      showResult(await answer.json(), image);
    } catch {
      // The server answered 200; what failed is reading or showing that answer in this page.
      stop();
      showMessage("The server answered, but this page could not show the result. Reload the page and try again.");
      return;
    }
    showStatus(`Done in ${stop().toFixed(1)} s.`);
  } finally {
    state.running = false;
    state.request = null;
    updateSegmentButton();
  }
}

function cancelRequest() {
  if (state.request) state.request.abort("cancelled");
}

// ------------------------------------------------------------------------------------------- results

function pngUrl(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  state.resultUrls.push(url);
  return url;
}

function showResult(answer, image) {
  for (const url of state.resultUrls) URL.revokeObjectURL(url);
  state.resultUrls = [];
  const stem = image.name.replace(/\.[^.]*$/, "") || "image";
  $("out-original").src = state.previewUrl;
  for (const kind of OUTPUTS) {
    const url = pngUrl(answer.outputs[kind].png_base64);
    $(`out-${kind}`).src = url;
    const link = $(`download-${kind}`);
    link.href = url;
    link.download = `${stem}-${kind}.png`;
  }
  const stats = answer.statistics;
  const size = answer.image;
  setTile("tile-coverage", stats.coverage_percent, `${stats.coverage_percent.toFixed(2)} %`);
  setTile("tile-area", stats.area_px, `${stats.area_px} px`);
  setTile("tile-size", `${size.width}x${size.height}`, `${size.width} × ${size.height} px`);
  setTile("tile-score-mean", stats.score_mean, stats.score_mean.toFixed(4));
  setTile("tile-score-max", stats.score_max, stats.score_max.toFixed(4));
  const quality = answer.quality;
  const verdict = quality.accepted ? "accepted" : `rejected: ${quality.reasons.join(", ").replaceAll("_", " ")}`;
  setTile("tile-verdict", quality.reasons.join(",") || "accepted", verdict);
  const iris = answer.iris;
  const openness = iris.occlusion90 === null ? "none fitted" : `${(100 * iris.occlusion90).toFixed(1)} %`;
  setTile("tile-openness", iris.occlusion90, openness);
  const diameter = iris.diameter_px === null ? "none fitted" : `${iris.diameter_px.toFixed(1)} px`;
  setTile("tile-diameter", iris.diameter_px, diameter);
  const used = answer.parameters;
  $("used").textContent =
    `${used.points} ${used.prompts} prompts, threshold ${used.threshold}, seed ${used.seed}; ` +
    `model ${answer.model.name} ${answer.model.version}.`;
  const rows = Object.entries(answer.timings_ms).map(([stage, ms]) => {
    const row = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = stage;
    const value = document.createElement("td");
    value.textContent = ms.toFixed(1);
    row.append(name, value);
    return row;
  });
  $("timings").replaceChildren(...rows);
  $("results").hidden = false;
  $("results-title").focus({ preventScroll: true });
}

function setTile(id, value, text) {
  const tile = $(id);
  tile.dataset.value = String(value);
  tile.textContent = text;
}

// -------------------------------------------------------------------------------------------- errors

async function errorOf(answer) {
  try {
    const body = await answer.json();
    return body.error || {};
  } catch {
    return {}; // not our JSON (a proxy in front of the server, say): the status decides
  }
}

// Every answer the API can give, as a sentence a visitor can act on.
function errorSentence(status, error, retryAfter) {
  const code = error.code || "";
  const wait = Number.parseInt(retryAfter || "", 10);
  const again = Number.isFinite(wait) ? `Try again in ${wait} s.` : "Try again in a few seconds.";
  if (status === 413 && code === "image_too_large") {
    return "This image has more pixels than the server accepts. Choose a smaller image.";
  }
  if (status === 413) return "This file is too large for the server. Choose a smaller image.";
  if (status === 415) return "This file is not an image the server can read. Use a JPEG, PNG, BMP, TIFF or WebP file.";
  if (code === "undecodable_image") return "This image file is damaged or incomplete: it could not be read.";
  if (status === 401) return "This server needs an API key: enter it under “API key” and try again.";
  if (code === "model_loading" || code === "model_not_ready") return `The model is still loading. ${again}`;
  if (status === 503) return `The server is busy. ${again}`;
  if (status === 422 && error.message) return `The server refused a setting: ${error.message}.`;
  return `The server could not segment this image (error ${status}). Try again later.`;
}

function reportError(status, error, retryAfter) {
  showMessage(errorSentence(status, error, retryAfter));
  if (status === 401) {
    $("key-box").open = true;
    $("api-key").focus();
  }
}

// Errors interrupt (role="alert"); progress and success are announced politely (role="status").
function showMessage(text) {
  const message = $("message");
  message.textContent = text;
  message.hidden = !text;
}

function showStatus(text) {
  const status = $("status");
  status.textContent = text;
  status.hidden = !text;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

wireInputs();
$("settings").addEventListener("submit", segment);
$("cancel").addEventListener("click", cancelRequest);
watchReadiness();
