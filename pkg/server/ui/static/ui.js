// Reloads an element marked data-refresh from that URL every second: a rollout's live progress.
for (const el of document.querySelectorAll("[data-refresh]")) {
	setInterval(async () => { const r = await fetch(el.dataset.refresh); if (r.ok) el.innerHTML = await r.text(); }, 1000);
}
