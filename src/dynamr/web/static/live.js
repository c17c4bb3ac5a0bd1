// dynamr dashboard: live updates. Each element with data-live="URL" shows the HTML fragments the server
// pushes there (server-sent events); an event named "done" ends the stream (the job ended).
"use strict";
for (const el of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(el.dataset.live);
  const badge = document.getElementById("live-badge");
  source.onmessage = (event) => {
    el.innerHTML = event.data;
    if (badge) { badge.textContent = "live"; badge.className = "badge live"; }
  };
  source.addEventListener("done", () => {
    source.close();
    if (badge) { badge.textContent = "final"; badge.className = "badge"; }
  });
  source.onerror = () => {
    if (badge && source.readyState !== EventSource.CLOSED) { badge.textContent = "reconnecting"; badge.className = "badge warn"; }
  };
}
