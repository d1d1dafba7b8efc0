// Home-page widget (react_apps, destination "dashboard"): latest rounds, files per status and mining jobs
// the caller may read, from ../api/summary. A no-build ES module on the UI's own React (globalThis.React).
const React = globalThis.React;
const h = React.createElement;
const API = new URL("../api/summary", import.meta.url);

function PlatformWidget() {
  const [data, setData] = React.useState(null);
  const [error, setError] = React.useState(null);
  React.useEffect(() => {
    fetch(API, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : r.json().then((b) => Promise.reject(new Error(`${r.status}: ${b.detail}`)))))
      .then(setData, (e) => setError(e.message));
  }, []);
  const box = (...children) => h("div", { "data-testid": "platform-widget", style: { padding: "12px", border: "1px solid #cbd5e0", borderRadius: "8px", margin: "8px 0" } },
    h("strong", null, "Platform"), " ", h("a", { href: "plugin/platform-rounds" }, "dashboards"), ...children);
  if (error) return box(h("p", { "data-k": "error" }, error));
  if (!data) return box(h("p", null, "loading…"));
  const parts = [];
  if (data.rounds) {
    parts.push(h("p", { key: "r", "data-k": "rounds" }, `${data.rounds.total} rounds: ` +
      Object.entries(data.rounds.by_status).map(([k, v]) => `${v} ${k}`).join(", ")));
    parts.push(h("ul", { key: "l" }, data.rounds.latest.map((r) =>
      h("li", { key: r.id }, `#${r.round_number} ${r.status}, ${r.participants} participants, ${r.dropouts} dropouts`))));
  }
  if (data.files) parts.push(h("p", { key: "f", "data-k": "files" }, "files: " +
    Object.entries(data.files).map(([k, v]) => `${v} ${k}`).join(", ")));
  if (data.mining_jobs !== undefined) parts.push(h("p", { key: "m", "data-k": "mining" }, `${data.mining_jobs} mining jobs`));
  return box(...parts);
}

globalThis.PlatformWidget = PlatformWidget;
export default PlatformWidget;
