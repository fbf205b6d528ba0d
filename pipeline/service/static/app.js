"use strict";
// The reelhash search page: talks only to this service's /api (same origin, so the token cookie goes along).

const $ = (id) => document.getElementById(id);
const IMAGE_URI = /\.(jpe?g|png|webp|gif|bmp|tiff?)$/i;

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - 60 * minutes).toFixed(1).padStart(4, "0")}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadIndex() {
  const info = $("index-info");
  try {
    const index = await api("/api/index");
    const counts = index.counts || {};
    info.textContent = `index ${index.index} v${index.version} · ${counts.videos ?? "?"} videos · ` +
      `${counts.clips ?? "?"} clips · ${index.code_bits} bits · model ${index.model_id}`;
  } catch (error) {
    info.textContent = `index unavailable: ${error.message}`;
    info.classList.add("error");
  }
}

function showStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function thumbnail(hit, version) {
  const img = element("img", "thumb");
  img.alt = hit.caption || hit.uri;
  img.loading = "lazy";
  img.src = `/api/thumbnail/${encodeURIComponent(hit.video_id)}/${hit.clip_idx}?v=${version}`;
  img.addEventListener("error", () => img.replaceWith(element("div", "thumb missing", "no thumbnail")));
  return img;
}

function render(body) {
  const results = $("results");
  results.replaceChildren();
  const warnings = body.warnings.length ? ` — ${body.warnings.join("; ")}` : "";
  showStatus(`${body.results.length} results for “${body.query}” (index v${body.version})${warnings}`, false);
  for (const hit of body.results) {
    const card = element("button", "hit");
    card.type = "button";
    card.dataset.videoId = hit.video_id;
    card.dataset.start = hit.t_start;
    card.dataset.end = hit.t_end;
    const meta = element("div", "meta");
    meta.append(element("p", "caption", hit.caption || hit.uri));
    const facts = element("div", "facts");
    facts.append(element("span", "rank", `#${hit.rank} · distance ${hit.distance}`),
                 element("span", "range", `${clock(hit.t_start)}–${clock(hit.t_end)}`));
    meta.append(facts);
    card.append(thumbnail(hit, body.version), meta);
    card.addEventListener("click", () => play(hit));
    results.append(card);
  }
}

async function mediaProblem(url) {
  try {
    const response = await fetch(url, { headers: { Range: "bytes=0-0" } });
    if (!response.ok) return (await response.json()).detail;
  } catch (error) {
    return error.message;
  }
  return "the browser cannot play this file's format";
}

function play(hit) {
  const video = $("video");
  const problem = $("player-error");
  const url = `/api/media/${encodeURIComponent(hit.video_id)}`;
  problem.hidden = true;
  $("player-title").textContent = `${hit.uri} · ${clock(hit.t_start)}–${clock(hit.t_end)}`;
  $("player").showModal();
  if (IMAGE_URI.test(hit.uri)) {
    video.hidden = true;
    video.removeAttribute("src");
    let img = $("player-image");
    if (!img) {
      img = element("img");
      img.id = "player-image";
      img.style.width = "100%";
      video.after(img);
    }
    img.hidden = false;
    img.src = url;
    return;
  }
  const image = $("player-image");
  if (image) image.hidden = true;
  video.hidden = false;
  const end = hit.t_end > hit.t_start ? `,${hit.t_end}` : "";
  video.onerror = async () => {
    problem.textContent = `This clip cannot be played: ${await mediaProblem(url)}`;
    problem.hidden = false;
  };
  video.src = `${url}#t=${hit.t_start}${end}`;  // a media fragment: the player starts at the clip and stops at its end
  video.play().catch(() => {});  // autoplay may be refused; the controls stay usable
}

async function search(url, options, label) {
  showStatus(`searching ${label}…`, false);
  try {
    render(await api(url, options));
  } catch (error) {
    $("results").replaceChildren();
    showStatus(error.message, true);
  }
}

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) { showStatus("type a few words first", true); return; }
  const k = $("k").value || 12;
  search(`/api/search?q=${encodeURIComponent(q)}&k=${encodeURIComponent(k)}`, undefined, `for “${q}”`);
});

$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const k = $("k").value || 12;
  search(`/api/search/like?k=${encodeURIComponent(k)}`, { method: "POST", body: form }, `like ${file.name}`);
});

$("player-close").addEventListener("click", () => $("player").close());
$("player").addEventListener("close", () => $("video").pause());

loadIndex();
