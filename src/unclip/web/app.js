// unclip web app: plain JS over the same API the OpenAI clients use (/v1), no build step.
"use strict";
const $ = (id) => document.getElementById(id);
// Signed in by an HttpOnly session cookie (POST /v1/session): the page never keeps the API key. Requests that
// change anything carry the session's CSRF token.
localStorage.removeItem("unclip-key"); // where earlier versions kept the key
let csrf = "";
let currentJob = null;
let busy = false; // one submission at a time: a double click must not start two jobs
let historyAfter = null;
let features = new Set(); // what the signed-in role may use (GET /v1/me)
let examples = {}; // model id → prompts measured to draw well (GET /v1/models)
let editBlob = null; // an image of yours sent to the edit tab from the viewer (instead of a file)
// which feature each tab needs (GET /v1/me lists the features the user's role may use)
// (the outpainting canvas sends each frame as an edit of an uploaded crop)
const TAB_FEATURE = { generate: "generate", edit: "edit_upload", outpaint: ["outpaint", "edit_upload"],
  vary: "variation", blend: "blend", upscale: "upscale" };

async function api(path, opts = {}, retried = false) {
  const method = (opts.method || "GET").toUpperCase();
  const headers = Object.assign(method === "GET" ? {} : { "X-CSRF-Token": csrf }, opts.headers || {});
  const res = await fetch("/v1" + path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (res.status === 403 && body?.error?.code === "csrf_failed" && !retried) {
    // signed in again in another tab: this page's token is that of an ended session; read the current one
    const session = await fetch("/v1/session", { credentials: "same-origin" });
    if (session.ok) {
      csrf = (await session.json()).csrf_token;
      return api(path, opts, true);
    }
  }
  if (!res.ok) {
    const err = new Error(body?.error?.message || res.statusText);
    err.status = res.status;
    if (res.status === 401 && path !== "/session") signedOut(); // the session ended (expired, key revoked)
    throw err;
  }
  return body;
}

// Signed out (here, by a 401, or in another tab): nothing of the account stays on the page for the next one
// to sign in on it (their history, an admin's tables); a reload starts it afresh.
let reloading = false; // a second reload (two requests answered 401) aborted the first one's navigation
function signedOut() {
  if (!$("app").hidden) { if (!reloading) { reloading = true; location.reload(); } return; }
  $("signin").hidden = false; $("signout").hidden = true; $("who").textContent = "";
}

// An image of a finished job, from this page's origin: its signed URL may be on another (UNCLIP_PUBLIC_URL),
// which the canvas and fetch cannot read without CORS.
function ownImageUrl(done, i) {
  const id = done.image_ids?.[i];
  return id ? `/v1/images/${id}/content` : done.result.data[i].url;
}

function showError(e) { $("error").textContent = e ? e.message : ""; $("error").hidden = !e; }

async function signIn() {
  try {
    csrf = (await api("/session")).csrf_token;
    const me = await api("/me");
    $("who").textContent = `${me.email} · ${me.role} · ${me.credits} credits`;
    $("signin").hidden = true; $("app").hidden = false; $("signout").hidden = false;
    const waiting = me.role === "waitlisted";
    // a waitlisted account sees its status and nothing else
    document.querySelector("#app nav").hidden = waiting;
    document.querySelectorAll(".tab").forEach((t) => { if (waiting) t.hidden = true; });
    if (waiting) {
      showError(new Error("You are on the waitlist: an administrator will approve your account."));
      return;
    }
    features = new Set(me.features || []);
    for (const b of document.querySelectorAll("nav button")) {
      const need = TAB_FEATURE[b.dataset.tab];
      b.hidden = b.dataset.tab === "admin" ? me.role !== "admin" : [].concat(need || []).some((f) => !features.has(f));
    }
    const models = await api("/models");
    // "dall-e-2" is the OpenAI clients' name for the default model: list each model once
    const ids = models.data.map((m) => m.id);
    const shown = ids.length > 1 ? ids.filter((id) => id !== "dall-e-2") : ids;
    examples = Object.fromEntries(models.data.map((m) => [m.id, m.examples || []]));
    for (const sel of document.querySelectorAll("select.model")) {
      const chosen = sel.value;
      sel.replaceChildren(...shown.map((id) => new Option(id)));
      if (shown.includes(chosen)) sel.value = chosen; // signIn runs again after each job: keep the choice
    }
    surpriseButton();
  } catch (e) {
    signedOut();
    if (e.status !== 401) signInError(e);
  }
}

for (const sel of document.querySelectorAll("select.size")) {
  sel.replaceChildren(...["256x256", "512x512", "1024x1024"].map((s) => new Option(s)));
}

$("signin-form").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    await api("/session", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ api_key: $("key").value.trim() }) });
    $("key").value = ""; signInError(null);
    signIn();
  } catch (e) { signInError(e); } // its own line: the sign-up's result may hold a new key, shown only once
};
function signInError(e) {
  $("signin-error").textContent = e ? "Sign-in failed: " + e.message : ""; $("signin-error").hidden = !e;
}
$("signup-form").onsubmit = async (ev) => {
  ev.preventDefault();
  // one request at a time, and none after the key is shown: a second click's "email taken" would replace it
  const fields = $("signup-form").querySelectorAll("input, button");
  if ($("signup-form").dataset.busy) return;
  $("signup-form").dataset.busy = "1"; fields.forEach((f) => (f.disabled = true));
  try {
    const body = await api("/signup", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: $("email").value, name: $("name").value }) });
    // in a field of its own, selected whole: a double click on text stops at its hyphens
    const field = Object.assign(document.createElement("input"), { id: "new-key", readOnly: true, value: body.api_key });
    field.onfocus = () => field.select();
    $("signup-result").replaceChildren("Your API key (shown only once, keep it): ", field,
      " You are on the waitlist until an administrator approves you.");
  } catch (e) {
    $("signup-result").textContent = "Sign-up failed: " + e.message;
    delete $("signup-form").dataset.busy; fields.forEach((f) => (f.disabled = false));
  }
};
$("signout").onclick = async () => {
  try { await api("/session", { method: "DELETE" }); location.reload(); } catch (e) {
    if (e.status === 401) location.reload(); else showError(e); // not signed out: do not pretend it is
  }
};

for (const b of document.querySelectorAll("nav button")) {
  b.onclick = () => {
    document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => (t.hidden = t.id !== "tab-" + b.dataset.tab));
    showError(null); if (!busy) $("results").innerHTML = "";
    if (b.dataset.tab === "history") loadHistory(true);
    if (b.dataset.tab === "admin") loadAdmin();
  };
}

function figure(url, caption, id) {
  const f = document.createElement("figure");
  const a = document.createElement("a"); a.href = url; a.target = "_blank";
  const img = document.createElement("img"); img.src = url; img.loading = "lazy"; img.alt = caption || "generated image";
  const cap = document.createElement("figcaption"); cap.textContent = caption || "";
  a.append(img); f.append(a, cap);
  if (id) a.onclick = (ev) => { ev.preventDefault(); openViewer(id); };
  return f;
}

// --- the image viewer: prompt, seed, settings, provenance; download, copy, and vary / edit / upscale this ---
let viewing = null;
async function openViewer(id) {
  try {
    const im = await api(`/images/${id}`);
    viewing = im;
    $("viewer-img").src = `/v1/images/${id}/content`;
    $("viewer-img").alt = im.prompt || im.kind;
    $("viewer-prompt").textContent = im.prompt || `(${im.kind}, no prompt)`;
    $("viewer-seed").textContent = im.seed ?? "unknown";
    $("viewer-model").textContent = im.model;
    const settings = Object.entries(im.settings || {}).map(([k, v]) => `${k} ${v}`);
    if (im.settings?.size !== `${im.width}x${im.height}`) settings.push(`${im.width}×${im.height} px`);
    $("viewer-settings").textContent = settings.join(" · ");
    $("viewer-made").textContent = `${im.kind} · ${new Date(im.created_at * 1000).toLocaleString()}`;
    $("viewer-provenance").textContent = im.provenance?.signed
      ? `signed by this server · request ${im.provenance.request_id}` : "not signed by this server";
    $("viewer-download").href = `/v1/images/${id}/content`;
    $("viewer-download").download = `unclip-${id}.png`;
    $("viewer-copy-prompt").disabled = !im.prompt;
    $("viewer-copy-seed").disabled = im.seed == null;
    for (const b of document.querySelectorAll("#viewer [data-feature]")) b.hidden = !features.has(b.dataset.feature);
    const tooBig = Math.max(im.width, im.height) > 256; // the learned 4x stage takes up to 256 px
    $("viewer-upscale").disabled = tooBig;
    const oblong = im.width !== im.height; // an outpaint's canvas: variations, blends and edits take squares
    for (const b of ["viewer-vary", "viewer-blend", "viewer-edit"]) $(b).disabled = oblong;
    $("viewer-note").textContent = [
      tooBig && features.has("upscale") ? "Upscaling takes images up to 256 px." : "",
      oblong ? "Variations, blends and edits take square images: outpaint this one instead." : "",
    ].filter(Boolean).join(" ");
    $("viewer-report").open = false;
    $("viewer").showModal();
  } catch (e) { showError(e); }
}
function closeViewer() { $("viewer").close(); }
$("viewer-close").onclick = closeViewer;
async function copy(text, what) {
  try { await navigator.clipboard.writeText(String(text)); $("viewer-note").textContent = `${what} copied.`; }
  catch { $("viewer-note").textContent = `Could not copy: select it above.`; }
}
$("viewer-report-send").onclick = async () => {
  try {
    await api(`/images/${viewing.id}/report`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: $("viewer-report-reason").value }) });
    $("viewer-note").textContent = "Reported: an administrator will review it.";
    $("viewer-report").open = false; $("viewer-report-reason").value = "";
  } catch (e) { $("viewer-note").textContent = e.message; }
};
$("viewer-copy-prompt").onclick = () => copy(viewing.prompt, "Prompt");
$("viewer-copy-seed").onclick = () => copy(viewing.seed, "Seed");
async function viewedBlob() {
  const res = await fetch(`/v1/images/${viewing.id}/content`, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`Could not load the image (${res.status}).`);
  return res.blob();
}
function square(im) { return `${im.width}x${im.height}`; }
$("viewer-vary").onclick = async () => {
  try {
    const form = new FormData();
    form.append("image", await viewedBlob(), "image.png"); form.append("n", $("vary-n").value);
    const size = square(viewing);
    form.append("size", ["256x256", "512x512", "1024x1024"].includes(size) ? size : "256x256");
    closeViewer(); run("/images/variations", { body: form });
  } catch (e) { $("viewer-note").textContent = e.message; }
};
$("viewer-upscale").onclick = () => {
  const form = new FormData(); form.append("image_id", viewing.id);
  closeViewer(); run("/images/upscales", { body: form });
};
$("viewer-blend").onclick = () => {
  closeViewer();
  document.querySelector('nav button[data-tab="blend"]').click();
  const rows = [...$("blend-items").children];
  const empty = rows.find((r) => !r.dataset.imageId && !r.querySelector("input[type=text]").value.trim());
  if (empty) empty.remove(); else if (rows.length >= 4) rows[rows.length - 1].remove();
  blendItem({ image_id: viewing.id, label: viewing.prompt || viewing.kind });
};
$("viewer-edit").onclick = async () => {
  try {
    const blob = await viewedBlob();
    closeViewer();
    document.querySelector('nav button[data-tab="edit"]').click();
    $("edit-file").value = ""; editBlob = blob;
    loadEditImage(blob);
    if (viewing.prompt) $("edit-prompt").value = viewing.prompt;
    $("edit-canvas").scrollIntoView({ behavior: "smooth" });
  } catch (e) { $("viewer-note").textContent = e.message; }
};

// Submit with "Prefer: respond-async", then follow progress over server-sent events.
// `show`: put the images under the form (the outpainting canvas shows its candidates itself). Returns the
// finished job (null when it failed, or another submission was still running).
async function run(path, init, show = true) {
  if (busy) { showError(new Error("Another request is still running: wait for it, or cancel it.")); return null; }
  busy = true; $("results").setAttribute("aria-busy", "true");
  document.querySelectorAll("form button:not([type=button])").forEach((b) => (b.disabled = true));
  try { return await follow(path, init, show); } finally {
    busy = false; $("results").setAttribute("aria-busy", "false");
    document.querySelectorAll("form button:not([type=button])").forEach((b) => (b.disabled = false));
  }
}

async function follow(path, init, show) {
  showError(null); $("results").innerHTML = "";
  init.headers = Object.assign({ Prefer: "respond-async" }, init.headers || {});
  try {
    const job = await api(path, Object.assign({ method: "POST" }, init));
    currentJob = job.id;
    $("status").hidden = false; $("status-text").textContent = "queued"; $("progress").value = 0;
    const res = await fetch(`/v1/jobs/${job.id}/events`, { credentials: "same-origin" });
    if (!res.ok || !res.body) throw new Error(`Could not follow the job (${res.status}); it is in your history when it ends.`);
    const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = ""; let done = null;
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(chunk)?.[1]; const data = /^data: (.*)$/m.exec(chunk)?.[1];
        if (!data) continue;
        const d = JSON.parse(data);
        if (ev === "progress") {
          $("status-text").textContent = d.status + (d.total ? ` ${d.step}/${d.total}` : "");
          $("progress").value = d.total ? d.step / d.total : 0;
        } else if (ev === "done") done = d;
      }
    }
    $("status").hidden = true; currentJob = null;
    if (done?.status === "succeeded") {
      if (show) done.result.data.forEach((im, i) => $("results").append(figure(im.url, "", done.image_ids?.[i])));
      signIn();
      return done;
    }
    else if (done?.status === "cancelled" && !done.error) showError(new Error("Cancelled: its credits were refunded."));
    else showError(new Error(done?.error?.message || (done ? `Job ${done.status}.`
      : "The connection to the job ended before it did; it is in your history when it ends.")));
    signIn();
  } catch (e) { $("status").hidden = true; showError(e); }
  return null;
}

$("cancel").onclick = () => currentJob && api(`/jobs/${currentJob}/cancel`, { method: "POST" }).catch(showError);

$("gen-form").onsubmit = (ev) => {
  ev.preventDefault();
  const body = { prompt: $("gen-prompt").value, n: +$("gen-n").value, size: $("gen-size").value,
    model: $("gen-model").value };
  // advanced settings, sent only when set (the server's defaults otherwise)
  if ($("gen-seed").value !== "") body.seed = Math.trunc(+$("gen-seed").value);
  if ($("gen-steps").value !== "") body.steps = Math.trunc(+$("gen-steps").value);
  if ($("gen-guidance").value !== "") body.guidance = +$("gen-guidance").value;
  if ($("gen-negative").value.trim()) body.negative_prompt = $("gen-negative").value;
  run("/images/generations", { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
};

// --- blend: 2 to 4 prompts or images of yours, with weights ---------------------------------------------
function blendItem(item) {
  const row = document.createElement("div"); row.className = "blend-item";
  if (item.image_id) {
    row.dataset.imageId = item.image_id;
    const img = document.createElement("img"); img.src = `/v1/images/${item.image_id}/content`; img.alt = item.label || "";
    row.append(img, item.label || "image");
  } else {
    const text = document.createElement("input"); text.type = "text"; text.maxLength = 1000;
    text.placeholder = "a prompt"; text.value = item.prompt || ""; text.setAttribute("aria-label", "prompt");
    row.append(text);
  }
  const weight = document.createElement("input"); weight.type = "range"; weight.min = "0"; weight.max = "1";
  weight.step = "0.05"; weight.value = "0.5"; weight.setAttribute("aria-label", "weight");
  const shown = document.createElement("span"); shown.textContent = "0.50";
  weight.oninput = () => (shown.textContent = (+weight.value).toFixed(2));
  const remove = document.createElement("button"); remove.type = "button"; remove.textContent = "Remove";
  remove.onclick = () => { row.remove(); blendButtons(); };
  row.append(weight, shown, remove);
  $("blend-items").append(row); blendButtons();
}
function blendButtons() { $("blend-add").disabled = $("blend-items").children.length >= 4; }
$("blend-add").onclick = () => blendItem({});
blendItem({}); blendItem({});
$("blend-form").onsubmit = (ev) => {
  ev.preventDefault();
  const items = [...$("blend-items").children].map((row) => {
    const weight = +row.querySelector("input[type=range]").value;
    return row.dataset.imageId ? { image_id: row.dataset.imageId, weight }
      : { prompt: row.querySelector("input[type=text]").value.trim(), weight };
  }).filter((it) => it.image_id || it.prompt);
  if (items.length < 2) { showError(new Error("A blend needs 2 to 4 prompts or images.")); return; }
  run("/images/blends", { headers: { "Content-Type": "application/json" }, body: JSON.stringify({
    items, n: +$("blend-n").value, size: $("blend-size").value }) });
};

function surpriseButton() { $("surprise").hidden = !(examples[$("gen-model").value] || []).length; }
$("gen-model").onchange = surpriseButton;
$("surprise").onclick = () => {
  const list = examples[$("gen-model").value] || []; if (!list.length) return;
  const others = list.filter((p) => p !== $("gen-prompt").value); // a different one each time
  const pool = others.length ? others : list;
  $("gen-prompt").value = pool[Math.floor(Math.random() * pool.length)];
  $("gen-prompt").focus();
};

$("upscale-form").onsubmit = (ev) => {
  ev.preventDefault();
  const form = new FormData(); form.append("image", $("upscale-file").files[0], "image.png");
  run("/images/upscales", { body: form });
};

// --- edit: upload, paint the mask (painted = transparent = repaint) --------------------------------------
const canvas = $("edit-canvas"); const ctx = canvas.getContext("2d");
const mask = document.createElement("canvas"); const mctx = mask.getContext("2d");
let source = null; let painting = false;
function redraw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (source) ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  ctx.globalCompositeOperation = "destination-out"; ctx.drawImage(mask, 0, 0); ctx.globalCompositeOperation = "source-over";
}
function loadEditImage(blob) {
  const img = new Image();
  img.onload = () => {
    source = img; canvas.width = mask.width = img.naturalWidth; canvas.height = mask.height = img.naturalHeight;
    mctx.clearRect(0, 0, mask.width, mask.height); resetHistory(); redraw();
    $("tool-brush").checked = true; // a fresh mask: nothing to erase yet
  };
  img.src = URL.createObjectURL(blob);
}
$("edit-file").onchange = () => {
  const file = $("edit-file").files[0]; if (!file) return;
  editBlob = null; loadEditImage(file);
};
function paint(ev) {
  if (!painting || !source) return;
  const r = canvas.getBoundingClientRect(); const sx = canvas.width / r.width;
  // the eraser takes painted area back out of the mask
  mctx.globalCompositeOperation = $("tool-eraser").checked ? "destination-out" : "source-over";
  mctx.fillStyle = "#000"; mctx.beginPath();
  mctx.arc((ev.clientX - r.left) * sx, (ev.clientY - r.top) * sx, +$("brush").value * sx / 2, 0, 2 * Math.PI);
  mctx.fill(); mctx.globalCompositeOperation = "source-over"; redraw();
}
function countTransparent(c2d, cv) {
  if (!cv.width) return 0;
  const d = c2d.getImageData(0, 0, cv.width, cv.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) n += d[i] === 0;
  return n;
}
// undo / redo: the mask as it was before each stroke (or clear)
const undoStack = []; const redoStack = [];
function snapshot() { return mask.width ? mctx.getImageData(0, 0, mask.width, mask.height) : null; }
function remember() {
  const s = snapshot(); if (!s) return;
  undoStack.push(s); if (undoStack.length > 50) undoStack.shift();
  redoStack.length = 0; historyButtons();
}
function historyButtons() { $("undo").disabled = !undoStack.length; $("redo").disabled = !redoStack.length; }
function restore(from, to) {
  if (!from.length) return;
  to.push(snapshot()); mctx.putImageData(from.pop(), 0, 0); redraw(); historyButtons();
}
$("undo").onclick = () => restore(undoStack, redoStack);
$("redo").onclick = () => restore(redoStack, undoStack);
function resetHistory() { undoStack.length = 0; redoStack.length = 0; historyButtons(); }
canvas.onpointerdown = (ev) => { if (!source) return; remember(); painting = true; paint(ev); };
canvas.onpointermove = paint;
window.addEventListener("pointerup", () => (painting = false));
$("clear-mask").onclick = () => { remember(); mctx.clearRect(0, 0, mask.width, mask.height); redraw(); };
// Ctrl+Enter (Cmd+Enter) in a prompt box submits its form, as Enter does in a one-line field
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Enter" || !(ev.ctrlKey || ev.metaKey) || ev.target.tagName !== "TEXTAREA" || !ev.target.form) return;
  ev.preventDefault(); ev.target.form.requestSubmit();
});
document.addEventListener("keydown", (ev) => {
  if ($("tab-edit").hidden || !(ev.ctrlKey || ev.metaKey) || ev.key.toLowerCase() !== "z") return;
  if (["INPUT", "TEXTAREA"].includes(ev.target.tagName)) return; // their own text undo
  ev.preventDefault(); restore(ev.shiftKey ? redoStack : undoStack, ev.shiftKey ? undoStack : redoStack);
});

$("edit-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const file = editBlob || $("edit-file").files[0];
  if (!file) { showError(new Error("Choose a square PNG to edit, or open one of your images and press Edit.")); return; }
  // nothing painted: the image's own transparent pixels (if any) mark the area, as in the API
  const painted = countTransparent(mctx, mask) < mask.width * mask.height;
  if (!painted && !countTransparent(ctx, canvas)) {
    showError(new Error("Paint over the area to change first (choose paint, not erase), then press Edit.")); return;
  }
  const form = new FormData();
  form.append("image", file, "image.png");
  if (painted) {
    const m = document.createElement("canvas"); m.width = mask.width; m.height = mask.height;
    const c = m.getContext("2d"); c.fillStyle = "#000"; c.fillRect(0, 0, m.width, m.height);
    c.globalCompositeOperation = "destination-out"; c.drawImage(mask, 0, 0);
    form.append("mask", await new Promise((ok) => m.toBlob(ok, "image/png")), "mask.png");
  }
  form.append("prompt", $("edit-prompt").value); form.append("n", $("edit-n").value); form.append("size", $("edit-size").value);
  const done = await run("/images/edits", { body: form });
  // the candidates: any of them can be edited further (its mask starts empty)
  [...$("results").children].forEach((f, i) => {
    if (!done?.result?.data?.[i]) return;
    const again = document.createElement("button"); again.type = "button"; again.textContent = "Edit this one";
    again.onclick = async () => {
      try {
        const res = await fetch(ownImageUrl(done, i), { credentials: "same-origin" });
        if (!res.ok) throw new Error(`Could not load the image (${res.status}).`);
        editBlob = await res.blob(); $("edit-file").value = ""; loadEditImage(editBlob);
        $("edit-canvas").scrollIntoView({ behavior: "smooth" });
      } catch (e) { showError(e); }
    };
    f.append(again);
  });
};

// --- outpainting canvas: frames of the model's size, each an edit of the crop under it, its empty part
// transparent; pan, zoom, candidates, undo, export -------------------------------------------------------
const FRAME = 256; // the model's native size: each frame is one 256x256 edit
const out = {
  view: $("out-canvas"), world: document.createElement("canvas"),
  scale: 1, ox: 0, oy: 0, frame: { x: 0, y: 0 }, started: false,
  drag: null, undo: [], candidates: [], chosen: -1,
};
out.world.width = out.world.height = 3072; // room for 5 frames each way around a 256 px start
const wctx = out.world.getContext("2d", { willReadFrequently: true });
const vctx = out.view.getContext("2d");
function outNote(text) { $("out-note").textContent = text || ""; }
function outDraw() {
  const { view, scale, ox, oy, frame } = out;
  vctx.setTransform(1, 0, 0, 1, 0, 0); vctx.clearRect(0, 0, view.width, view.height);
  vctx.setTransform(scale, 0, 0, scale, ox, oy);
  vctx.imageSmoothingEnabled = scale < 1;
  vctx.drawImage(out.world, 0, 0);
  const preview = out.candidates[out.chosen];
  if (preview) vctx.drawImage(preview, frame.x, frame.y, FRAME, FRAME);
  if (out.started) {
    vctx.lineWidth = 2 / scale; vctx.setLineDash([8 / scale, 6 / scale]);
    vctx.strokeStyle = "#3b5bdb"; vctx.strokeRect(frame.x, frame.y, FRAME, FRAME);
    vctx.setLineDash([]);
  }
  $("out-undo").disabled = !out.undo.length; $("out-export").disabled = !out.started;
}
function contentBox() { // the painted part of the world, in world pixels (null when empty)
  const { data, width, height } = wctx.getImageData(0, 0, out.world.width, out.world.height);
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width * 4;
    for (let x = 0; x < width; x++) {
      if (data[row + x * 4 + 3]) { if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; y1 = y; }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}
function outFit() {
  const b = contentBox() || { x: 0, y: 0, w: FRAME, h: FRAME };
  const x0 = Math.min(b.x, out.frame.x), y0 = Math.min(b.y, out.frame.y);
  const x1 = Math.max(b.x + b.w, out.frame.x + FRAME), y1 = Math.max(b.y + b.h, out.frame.y + FRAME);
  out.scale = Math.min(4, 0.9 * Math.min(out.view.width / (x1 - x0), out.view.height / (y1 - y0)));
  out.ox = (out.view.width - (x1 - x0) * out.scale) / 2 - x0 * out.scale;
  out.oy = (out.view.height - (y1 - y0) * out.scale) / 2 - y0 * out.scale;
  outDraw();
}
function moveFrame(x, y) {
  const max = out.world.width - FRAME;
  out.frame.x = Math.round(Math.min(max, Math.max(0, x))); out.frame.y = Math.round(Math.min(max, Math.max(0, y)));
  outDraw();
}
function outStart(blob) {
  const img = new Image();
  img.onload = () => {
    URL.revokeObjectURL(img.src);
    wctx.clearRect(0, 0, out.world.width, out.world.height);
    const x = Math.round((out.world.width - img.naturalWidth) / 2), y = Math.round((out.world.height - img.naturalHeight) / 2);
    wctx.drawImage(img, x, y);
    out.started = true; out.undo = []; outCandidates([]);
    // the first frame: over the right edge, half on the picture
    out.frame = { x: x + img.naturalWidth - FRAME / 2, y: y + Math.round((img.naturalHeight - FRAME) / 2) };
    outFit(); outNote(`${img.naturalWidth}×${img.naturalHeight} px. The frame is ${FRAME}×${FRAME} px.`);
  };
  img.onerror = () => showError(new Error("That file is not an image this browser can read."));
  img.src = URL.createObjectURL(blob);
}
function toWorld(ev) {
  const r = out.view.getBoundingClientRect(); const k = out.view.width / r.width;
  return { x: ((ev.clientX - r.left) * k - out.ox) / out.scale, y: ((ev.clientY - r.top) * k - out.oy) / out.scale };
}
out.view.onpointerdown = (ev) => {
  if (!out.started) return;
  const p = toWorld(ev); const f = out.frame;
  const inFrame = p.x >= f.x && p.x < f.x + FRAME && p.y >= f.y && p.y < f.y + FRAME;
  if (inFrame && out.candidates.length) { outNote("Keep or discard the candidates before moving the frame."); return; }
  out.drag = inFrame ? { kind: "frame", dx: p.x - f.x, dy: p.y - f.y }
    : { kind: "pan", x: ev.clientX, y: ev.clientY, ox: out.ox, oy: out.oy };
  out.view.setPointerCapture(ev.pointerId);
};
out.view.onpointermove = (ev) => {
  const d = out.drag; if (!d) return;
  if (d.kind === "frame") { const p = toWorld(ev); moveFrame(p.x - d.dx, p.y - d.dy); return; }
  const r = out.view.getBoundingClientRect(); const k = out.view.width / r.width;
  out.ox = d.ox + (ev.clientX - d.x) * k; out.oy = d.oy + (ev.clientY - d.y) * k; outDraw();
};
out.view.onpointerup = out.view.onpointercancel = () => (out.drag = null);
function zoom(factor, cx = out.view.width / 2, cy = out.view.height / 2) {
  const s = Math.min(8, Math.max(0.1, out.scale * factor)); const k = s / out.scale;
  out.ox = cx - (cx - out.ox) * k; out.oy = cy - (cy - out.oy) * k; out.scale = s; outDraw();
}
out.view.addEventListener("wheel", (ev) => {
  if (!out.started) return;
  ev.preventDefault();
  const r = out.view.getBoundingClientRect(); const k = out.view.width / r.width;
  zoom(ev.deltaY < 0 ? 1.15 : 1 / 1.15, (ev.clientX - r.left) * k, (ev.clientY - r.top) * k);
}, { passive: false });
out.view.onkeydown = (ev) => {
  const step = ev.shiftKey ? 64 : 16;
  const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
  if (!d || !out.started || out.candidates.length) return;
  ev.preventDefault(); moveFrame(out.frame.x + d[0], out.frame.y + d[1]);
};
$("out-zoom-in").onclick = () => zoom(1.25);
$("out-zoom-out").onclick = () => zoom(1 / 1.25);
$("out-fit").onclick = () => out.started && outFit();
$("out-file").onchange = () => { const f = $("out-file").files[0]; if (f) outStart(f); };

function outCandidates(images) {
  out.candidates = images; out.chosen = images.length ? 0 : -1;
  const box = $("out-candidates"); box.innerHTML = "";
  images.forEach((img, i) => {
    const b = document.createElement("button"); b.type = "button"; b.setAttribute("role", "option");
    b.setAttribute("aria-label", `candidate ${i + 1}`);
    const thumb = new Image(); thumb.src = img.src; thumb.alt = `candidate ${i + 1}`; b.append(thumb);
    b.onclick = () => { out.chosen = i; outChoice(); };
    box.append(b);
  });
  $("out-choice").hidden = !images.length; outChoice();
}
function outChoice() {
  [...$("out-candidates").children].forEach((b, i) => b.setAttribute("aria-selected", String(i === out.chosen)));
  outDraw();
}
function loadImage(url) {
  return new Promise((ok, fail) => {
    const img = new Image(); img.onload = () => ok(img);
    img.onerror = () => fail(new Error("Could not load a candidate.")); img.src = url;
  });
}
$("out-form").onsubmit = async (ev) => {
  ev.preventDefault();
  if (!out.started) { showError(new Error("Start from a PNG, or open one of your images and press Outpaint.")); return; }
  if (out.candidates.length) { showError(new Error("Keep or discard the candidates first.")); return; }
  const crop = document.createElement("canvas"); crop.width = crop.height = FRAME;
  const c = crop.getContext("2d", { willReadFrequently: true });
  c.drawImage(out.world, out.frame.x, out.frame.y, FRAME, FRAME, 0, 0, FRAME, FRAME);
  const alpha = c.getImageData(0, 0, FRAME, FRAME).data;
  let filled = 0;
  for (let i = 3; i < alpha.length; i += 4) if (alpha[i] === 255) filled++;
  const share = filled / (FRAME * FRAME);
  if (share === 0) { showError(new Error("The frame does not touch the picture: drag it so that it half covers it.")); return; }
  if (share === 1) { showError(new Error("The frame has no empty part: drag it past the picture's edge.")); return; }
  const form = new FormData();
  form.append("image", await new Promise((ok) => crop.toBlob(ok, "image/png")), "frame.png");
  form.append("prompt", $("out-prompt").value); form.append("n", $("out-n").value);
  form.append("size", `${FRAME}x${FRAME}`);
  const at = { ...out.frame };
  const done = await run("/images/edits", { body: form }, false);
  if (!done) return;
  try {
    const images = await Promise.all(done.result.data.map((_, i) => loadImage(ownImageUrl(done, i))));
    out.frame = at; outCandidates(images);
    outNote(`${images.length} candidate${images.length > 1 ? "s" : ""}: pick one, then keep it or discard them.`);
  } catch (e) { showError(e); }
};
$("out-keep").onclick = () => {
  const img = out.candidates[out.chosen]; if (!img) return;
  const { x, y } = out.frame;
  out.undo.push({ x, y, pixels: wctx.getImageData(x, y, FRAME, FRAME) });
  if (out.undo.length > 30) out.undo.shift();
  wctx.drawImage(img, x, y, FRAME, FRAME);
  outCandidates([]); outNote("Kept. Move the frame on and generate again, or export the canvas.");
};
$("out-discard").onclick = () => { outCandidates([]); outNote("Discarded."); };
$("out-undo").onclick = () => {
  const last = out.undo.pop(); if (!last) return;
  wctx.putImageData(last.pixels, last.x, last.y); outCandidates([]); outNote("Undone.");
};
$("out-export").onclick = () => {
  const b = contentBox(); if (!b) return;
  const c = document.createElement("canvas"); c.width = b.w; c.height = b.h;
  c.getContext("2d").drawImage(out.world, b.x, b.y, b.w, b.h, 0, 0, b.w, b.h);
  c.toBlob((blob) => {
    const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = "unclip-canvas.png";
    document.body.append(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    outNote(`Exported ${b.w}×${b.h} px.`);
  }, "image/png");
};
$("viewer-outpaint").onclick = async () => {
  try {
    const blob = await viewedBlob();
    closeViewer();
    document.querySelector('nav button[data-tab="outpaint"]').click();
    $("out-file").value = ""; outStart(blob);
    if (viewing.prompt) $("out-prompt").value = viewing.prompt;
  } catch (e) { $("viewer-note").textContent = e.message; }
};
outDraw();

$("vary-form").onsubmit = (ev) => {
  ev.preventDefault();
  const form = new FormData();
  form.append("image", $("vary-file").files[0]); form.append("n", $("vary-n").value); form.append("size", $("vary-size").value);
  run("/images/variations", { body: form });
};

let historyLoad = 0; // the newest load: an older one's answer (the tab clicked twice) is dropped
async function loadHistory(fresh = false) {
  if (!fresh && $("more").disabled) return; // "More" pressed twice: one page
  const load = ++historyLoad;
  if (fresh) { $("history").innerHTML = ""; historyAfter = null; }
  $("more").disabled = true;
  try {
    const page = await api("/images?limit=24" + (historyAfter ? "&after=" + historyAfter : ""));
    if (load !== historyLoad) return;
    page.data.forEach((im) => $("history").append(figure(im.url, im.prompt ? `${im.kind} · ${im.prompt}` : im.kind, im.id)));
    historyAfter = page.last_id; $("more").hidden = !page.has_more;
  } catch (e) { if (load === historyLoad) showError(e); } finally { if (load === historyLoad) $("more").disabled = false; }
}
$("more").onclick = () => loadHistory();

// --- admin: the waitlist, users' roles, credits and status, refused requests ----------------------------
const ROLES = ["admin", "trusted", "member", "waitlisted"];
function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content); else td.textContent = content ?? "";
  return td;
}
function button(text, onclick) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = text;
  b.onclick = async () => { b.disabled = true; try { await onclick(); } catch (e) { showError(e); } finally { b.disabled = false; } };
  return b;
}
async function adminPatch(user, body) {
  await api(`/admin/users/${user.id}`, { method: "PATCH", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  await loadAdmin();
}
async function loadAdmin() {
  try {
    showError(null);
    const review = $("review-filter").value;
    const [users, queue, changes] = await Promise.all([api("/admin/users"),
      api(`/admin/reviews?limit=100&review=${encodeURIComponent(review)}`), api("/admin/actions?limit=50")]);
    const byId = Object.fromEntries(users.data.map((u) => [u.id, u]));
    const waiting = users.data.filter((u) => u.role === "waitlisted");
    const wl = $("waitlist").tBodies[0]; wl.innerHTML = "";
    for (const u of waiting) {
      const row = wl.insertRow(); row.dataset.email = u.email;
      cell(row, u.email); cell(row, u.name); cell(row, new Date(u.created_at * 1000).toLocaleString());
      const actions = document.createElement("span");
      for (const role of ["member", "trusted"]) {
        actions.append(button(`Approve as ${role}`, async () => {
          await api(`/admin/users/${u.id}/approve`, { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ role }) });
          await loadAdmin();
        }), " ");
      }
      cell(row, actions);
    }
    $("waitlist-empty").hidden = waiting.length > 0;
    const find = $("user-filter").value.trim().toLowerCase();
    const ub = $("users").tBodies[0]; ub.innerHTML = "";
    for (const u of users.data.filter((x) => x.role !== "waitlisted" && x.email.toLowerCase().includes(find))) {
      const row = ub.insertRow(); row.dataset.email = u.email;
      cell(row, u.email);
      const role = document.createElement("select"); role.setAttribute("aria-label", `role of ${u.email}`);
      role.replaceChildren(...ROLES.map((r) => new Option(r, r, r === u.role, r === u.role)));
      role.onchange = () => { // a keystroke on a focused select changes it: ask first
        if (!confirm(`Change the role of ${u.email} from ${u.role} to ${role.value}?`)) { role.value = u.role; return; }
        adminPatch(u, { role: role.value }).catch((e) => { role.value = u.role; showError(e); });
      };
      cell(row, role);
      const credits = document.createElement("span");
      const delta = document.createElement("input"); delta.type = "number"; delta.placeholder = "+/-";
      delta.setAttribute("aria-label", `credits to add for ${u.email}`);
      credits.append(`${u.credits} `, delta, " ", button("Add", async () => {
        const d = Math.trunc(+delta.value); if (!d) return;
        await adminPatch(u, { credits_delta: d });
      }));
      cell(row, credits);
      const suspended = u.status === "suspended";
      cell(row, button(suspended ? "Reactivate" : "Suspend", async () => {
        if (!suspended && !confirm(`Suspend ${u.email}? They cannot use the service until reactivated.`)) return;
        await adminPatch(u, { status: suspended ? "active" : "suspended" });
      })).prepend(`${u.status} `);
    }
    const rb = $("reviews").tBodies[0]; rb.innerHTML = "";
    for (const it of queue.data) {
      const row = rb.insertRow(); row.dataset.type = it.type; row.dataset.id = it.id;
      cell(row, new Date(it.created_at * 1000).toLocaleString());
      cell(row, it.type === "report" ? "reported image" : `refused request (${it.action})`);
      cell(row, byId[it.user_id]?.email || it.user_id); cell(row, it.category || "none"); cell(row, it.score.toFixed(2));
      const detail = document.createElement("span");
      if (it.type === "report") {
        const img = document.createElement("img"); img.className = "thumb"; img.alt = it.prompt || "reported image";
        img.src = `/v1/admin/images/${it.image_id}/content`;
        detail.append(img, ` “${it.prompt}” · reason: ${it.reason || "none given"}`);
      } else detail.append(`${it.endpoint} · prompt hash ${it.prompt_hash.slice(0, 12)}…`);
      cell(row, detail);
      const decision = document.createElement("span");
      if (it.review !== "pending") decision.append(`${it.review} `);
      for (const [verb, label] of [["confirm", "Confirm"], ["overturn", "Overturn"]]) {
        if (it.review === (verb === "confirm" ? "confirmed" : "overturned")) continue;
        decision.append(button(label, async () => {
          const withholds = verb === "confirm" && it.type === "report";
          if (withholds && !confirm("Confirm this report? The image is withheld from its owner.")) return;
          await api(`/admin/reviews/${it.type}/${it.id}`, { method: "POST",
            headers: { "Content-Type": "application/json" }, body: JSON.stringify({ decision: verb }) });
          await loadAdmin();
        }), " ");
      }
      cell(row, decision);
    }
    $("reviews-empty").hidden = queue.data.length > 0;
    const ab = $("admin-actions").tBodies[0]; ab.innerHTML = "";
    for (const it of changes.data) {
      const row = ab.insertRow(); row.dataset.action = it.action;
      cell(row, new Date(it.created_at * 1000).toLocaleString());
      cell(row, it.actor_id ? byId[it.actor_id]?.email || it.actor_id : "command line");
      cell(row, it.action); cell(row, byId[it.user_id]?.email || it.user_id || "");
      cell(row, Object.entries(it.detail).map(([k, v]) => `${k}: ${v}`).join(", "));
    }
    $("admin-actions-empty").hidden = changes.data.length > 0;
  } catch (e) { showError(e); }
}
$("user-filter").oninput = () => loadAdmin();
$("review-filter").onchange = () => loadAdmin();

signIn();
