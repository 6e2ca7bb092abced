// The dashboard's script layer: confirmation before actions, live parts re-fetched on a timer, and a small SVG
// chart of request rate and latency percentiles computed from two readings of the server's counters.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

async function refresh(element) {
  try {
    const response = await fetch(element.dataset.poll, { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.text();
    if ("text" in element.dataset) {
      const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
      element.textContent = body || "No output yet.";
      if (atBottom) element.scrollTop = element.scrollHeight;
    } else {
      element.innerHTML = body;
    }
  } catch (error) { /* the server restarting: try again next time */ }
}

function percentile(buckets, previous, q) {
  // buckets: cumulative [upper bound s, count]; the difference of two readings is the recent distribution
  const counts = buckets.map((b, i) => [b[0], b[1] - (previous[i] ? previous[i][1] : 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [bound, count] of counts) {
    if (count >= q * total) return Number.isFinite(bound) ? bound * 1000 : null;
  }
  return null;
}

function drawChart(svg, points) {
  const width = 600, height = 180, pad = 4;
  const series = [["rate", "#1f4e8c"], ["p50", "#1a7f37"], ["p99", "#cf222e"]];
  svg.replaceChildren();
  for (const [name, colour] of series) {
    const values = points.map((p) => p[name]).filter((v) => v !== null);
    const top = Math.max(1, ...values);
    const step = (width - 2 * pad) / Math.max(1, points.length - 1);
    const coords = points.map((p, i) => p[name] === null ? null :
      `${(pad + i * step).toFixed(1)},${(height - pad - (p[name] / top) * (height - 2 * pad)).toFixed(1)}`)
      .filter(Boolean);
    if (coords.length < 2) continue;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colour);
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
  }
}

function startChart(figure) {
  const svg = figure.querySelector("svg"), latest = figure.querySelector(".latest");
  const points = [];
  let previous = null;
  async function tick() {
    try {
      const response = await fetch(figure.dataset.chart, { credentials: "same-origin" });
      if (!response.ok) return;
      const reading = await response.json();
      reading.at = performance.now();
      if (previous) {
        const seconds = (reading.at - previous.at) / 1000;
        const point = { rate: (reading.requests - previous.requests) / seconds,
                        p50: percentile(reading.buckets, previous.buckets, 0.5),
                        p99: percentile(reading.buckets, previous.buckets, 0.99) };
        points.push(point);
        if (points.length > 90) points.shift();
        drawChart(svg, points);
        latest.textContent = `now: ${point.rate.toFixed(1)} req/s` +
          (point.p50 !== null ? `, p50 ≤ ${point.p50} ms, p99 ≤ ${point.p99} ms` : "");
      }
      previous = reading;
    } catch (error) { /* try again next time */ }
  }
  tick();
  setInterval(tick, Number(figure.dataset.every || 2000));
}

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("[data-poll]")) {
    setInterval(() => refresh(element), Number(element.dataset.every || 2000));
  }
  for (const figure of document.querySelectorAll("[data-chart]")) startChart(figure);
});
