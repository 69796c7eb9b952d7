// The page: plain DOM calls (no build step). Text from the collection (ids, labels) is only
// ever set as textContent, never as HTML.
"use strict";

const state = { info: null, mapModel: null, offset: 0, pageSize: 40, current: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  children.forEach((child) => node.append(child));
  return node;
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
let colours = new Map();   // label -> colour, set from the map's legend (its labels, sorted)

function colourAt(i) {   // ten distinct colours, then hues a golden angle apart
  return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360}, 60%, 50%)`;
}

function colourOf(label) { return label ? colours.get(label) || "#999" : "#ccc"; }

function labelText(labels) {
  return Object.entries(labels || {}).map(([col, vals]) => `${col}: ${vals.join(", ")}`).join("; ");
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function figure(item, caption) {
  const fig = el("figure", { "data-id": item.id, title: item.id },
    el("img", { src: item.thumb, alt: item.id, loading: "lazy" }),
    el("figcaption", {}, ...caption));
  fig.addEventListener("click", () => queryById(item.id));
  return fig;
}

function resultFigure(item, rank) {
  return figure(item, [el("span", { class: "score", text: `${rank}. ${item.score.toFixed(4)}` }),
    el("br"), el("span", { text: item.id }), el("br"),
    el("span", { class: "labels", text: labelText(item.labels) })]);
}

function showQuery(query) {
  const box = $("query");
  box.replaceChildren();
  if (query.id) {
    const fig = el("figure", { "data-id": query.id },
      el("img", { src: query.thumb, alt: query.id }),
      el("figcaption", {}, el("span", { text: query.id }), el("br"),
        el("span", { class: "labels", text: labelText(query.labels) }),
        el("br"), el("a", { href: query.image, target: "_blank", text: "full image" })));
    box.append(fig);
  } else {
    box.append(el("p", { text: query.upload || `words: "${query.words}"` }));
  }
}

function showResults(answer) {
  $("message").textContent = "";
  showQuery(answer.query);
  state.current = answer.query.id || null;
  const panel = $("results");
  panel.replaceChildren();
  for (const [name, result] of Object.entries(answer.models)) {
    const grid = el("div", { class: "grid" });
    if (result.error) grid.append(el("p", { class: "error", text: result.error }));
    else result.results.forEach((item, i) => grid.append(resultFigure(item, i + 1)));
    panel.append(el("section", { class: "model", "data-model": name },
      el("h2", { text: name }), grid));
  }
  markCurrent();
}

function fail(error) { $("message").textContent = error.message; }

function k() { return $("k").value; }

function queryById(id) {
  getJSON(`/api/query?id=${encodeURIComponent(id)}&k=${k()}`).then(showResults, fail);
}

function queryByUpload(file) {
  if (file.size > state.info.max_upload_bytes) {
    fail(new Error(`${file.name} is larger than ${state.info.max_upload_bytes} bytes`));
    return;
  }
  const form = new FormData();
  form.append("image", file);
  getJSON(`/api/query?k=${k()}`, { method: "POST", body: form }).then(showResults, fail);
}

function queryByWords(text) {
  getJSON(`/api/words?q=${encodeURIComponent(text)}&k=${k()}`).then(showResults, fail);
}

function markCurrent() {
  document.querySelectorAll("#map circle").forEach((c) =>
    c.classList.toggle("current", c.dataset.id === state.current));
}

function drawMap(data) {
  const svg = $("map");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const preview = $("preview");
  colours = new Map(data.legend.filter((l) => l).map((label, i) => [label, colourAt(i)]));
  for (const point of data.points) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", point.x);
    dot.setAttribute("cy", 1 - point.y);
    dot.setAttribute("r", data.points.length > 2000 ? 0.004 : 0.012);
    dot.setAttribute("fill", colourOf(point.colour));
    dot.dataset.id = point.id;
    dot.addEventListener("mouseenter", (event) => {
      preview.querySelector("img").src = point.thumb;
      preview.querySelector("span").textContent = `${point.id} ${point.colour}`;
      const box = $("map-box").getBoundingClientRect();
      preview.style.left = `${event.clientX - box.left + 12}px`;
      preview.style.top = `${event.clientY - box.top + 12}px`;
      preview.hidden = false;
    });
    dot.addEventListener("mouseleave", () => { preview.hidden = true; });
    dot.addEventListener("click", () => queryById(point.id));
    svg.append(dot);
  }
  $("colour-by").textContent = data.colour_by || "none";
  $("legend").replaceChildren(...data.legend.slice(0, 40).map((label) =>
    el("span", {}, el("i", { style: `background:${colourOf(label)}` }), label || "(none)")));
  markCurrent();
}

function loadMap(model) {
  state.mapModel = model;
  document.querySelectorAll("#map-models button").forEach((b) =>
    b.classList.toggle("active", b.dataset.model === model));
  getJSON(`/api/map?model=${encodeURIComponent(model)}`).then(drawMap, fail);
}

function loadPage(offset) {
  state.offset = Math.max(0, Math.min(offset, Math.max(0, state.info.count - 1)));
  getJSON(`/api/items?offset=${state.offset}&limit=${state.pageSize}`).then((page) => {
    $("collection").replaceChildren(...page.items.map((item) =>
      figure(item, [el("span", { text: item.id })])));
    const last = Math.min(state.offset + state.pageSize, page.total);
    $("page").textContent = `${state.offset + 1}-${last} of ${page.total}`;
  }, fail);
}

async function start() {
  const info = await getJSON("/api/info");
  state.info = info;
  $("summary").textContent = `${info.count} images; models: ` +
    info.models.map((m) => `${m.name} (${m.dim}-d, ${m.kind})`).join(", ");
  const counts = [...new Set([4, 8, 12, 16, 24, 32, info.k])].sort((a, b) => a - b);
  for (const n of counts) $("k").append(el("option", { value: n, text: n }));
  $("k").value = info.k;
  $("upload-form").hidden = !info.models.some((m) => m.upload);
  $("words-form").hidden = !info.models.some((m) => m.words);
  $("upload").addEventListener("change", (event) => {
    if (event.target.files.length) queryByUpload(event.target.files[0]);
  });
  $("words-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if ($("words").value.trim()) queryByWords($("words").value.trim());
  });
  $("prev").addEventListener("click", () => loadPage(state.offset - state.pageSize));
  $("next").addEventListener("click", () => loadPage(state.offset + state.pageSize));
  $("map-models").replaceChildren(...info.models.map((m) => {
    const button = el("button", { type: "button", "data-model": m.name, text: m.name });
    button.addEventListener("click", () => loadMap(m.name));
    return button;
  }));
  loadPage(0);
  loadMap(info.models[0].name);
}

start().catch(fail);
