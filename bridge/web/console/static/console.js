// The overview refreshes itself: it fetches /console/overview.json and updates the numbers and
// bars in place (the page reloads when sources or targets change, or the session ends).
"use strict";
(function () {
  const root = document.querySelector("[data-refresh]");
  if (!root) {
    return;
  }
  const url = root.dataset.refresh;
  const every = Number(root.dataset.every || "10") * 1000;
  const stale = root.querySelector("[data-stale]");

  function lookup(data, path) {
    return path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), data);
  }

  function drawBars(data) {
    const perMinute = data.events_per_minute;
    let tallest = 0;
    for (const counts of Object.values(perMinute)) {
      tallest = Math.max(tallest, ...counts);
    }
    tallest = tallest || 1;
    for (const svg of root.querySelectorAll("svg[data-chart]")) {
      const counts = perMinute[svg.dataset.chart] || [];
      const height = svg.viewBox.baseVal.height;
      svg.querySelectorAll("rect").forEach((rect, n) => {
        const count = counts[n] || 0;
        const h = (height * count) / tallest;
        rect.setAttribute("height", h.toFixed(2));
        rect.setAttribute("y", (height - h).toFixed(2));
        const title = rect.querySelector("title");
        if (title) {
          title.textContent = title.textContent.replace(/\d+$/, String(count));
        }
      });
    }
  }

  function update(data) {
    for (const node of root.querySelectorAll("[data-count]")) {
      const value = lookup(data, node.dataset.count);
      node.textContent = value === undefined ? "0" : String(value);
    }
    for (const node of root.querySelectorAll("[data-alarm]")) {
      const name = node.dataset.alarmClass || "alarm";
      node.classList.toggle(name, Boolean(lookup(data, node.dataset.alarm)));
    }
    drawBars(data);
    const updated = root.querySelector("[data-updated]");
    if (updated) {
      updated.textContent = data.now.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
    }
  }

  async function refresh() {
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        window.location.reload(); // signed out or expired: the server sends the login form
        return;
      }
      if (!response.ok) {
        throw new Error(String(response.status));
      }
      const data = await response.json();
      if (data.shape !== root.dataset.shape) {
        window.location.reload();
        return;
      }
      update(data);
      stale.hidden = true;
    } catch (error) {
      stale.hidden = false;
    }
  }

  window.setInterval(refresh, every);
})();
