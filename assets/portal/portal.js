// The customer portal page: signed in by a portal link (session cookie) or an API token posted to
// /session; polls the balance and this month's usage, lists the invoices. Dates are shown in the
// browser's time zone and language; usage days are UTC days, as billing counts them.
(function () {
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString();
  const PALETTE = ["#2f5fd0", "#e08a1e", "#2a9d6f", "#b4478d", "#6b7280", "#c23b22", "#5b8def", "#8c6d1f"];
  let timer = null;
  let lastUsage = null;

  const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
  const monthName = (key) => {
    const [y, m] = key.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, 1)).toLocaleDateString(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
  };
  const dayName = (iso) => new Date(iso + "T00:00:00Z").toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
  const issued = (iso) => new Date(iso + "T00:00:00Z").toLocaleDateString(undefined, { dateStyle: "long", timeZone: "UTC" });
  function inWords(iso) {
    const seconds = (new Date(iso) - Date.now()) / 1000;
    const words = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    for (const [unit, size, below] of [["second", 1, 60], ["minute", 60, 3600], ["hour", 3600, 172800]]) {
      if (Math.abs(seconds) < below) return words.format(Math.round(seconds / size), unit);
    }
    return words.format(Math.round(seconds / 86400), "day");
  }

  function rows(tableId, items, cells) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      for (const [content, numeric] of cells(item)) {
        const td = document.createElement("td");
        if (content instanceof Node) td.appendChild(content); else td.textContent = content;
        if (numeric) td.className = "num";
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  async function api(path, options) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store", ...options });
    if (response.status === 401) { login(); return null; }
    return response;
  }

  function showBalance(b) {
    $("org").textContent = `${b.org_id} · ${b.plan} plan`;
    $("credits-left").textContent = fmt(b.credits_left);
    $("consumed").textContent = fmt(b.consumed_credits);
    $("month").textContent = monthName(b.month);
    $("overage").textContent = fmt(b.overage_credits);
    $("overage-amount").textContent = b.overage_amount === null ? "not billed" : `${b.overage_amount} ${b.currency}`;
    $("as-of").textContent = b.as_of ? `${when(b.as_of)} (${inWords(b.as_of)})` : "no usage counted yet";
    $("updated").textContent = inWords(b.computed_at);
    rows("grants", b.grants, (g) => [[g.description], [fmt(g.credits), true], [fmt(g.credits_left), true],
                                     [`${when(g.expires_at)} (${inWords(g.expires_at)})`]]);
  }

  function chart(days, split, month) {
    const [y, m] = month.split("-").map(Number);
    const count = new Date(Date.UTC(y, m, 0)).getUTCDate();
    const series = [...new Set(days.map((d) => d[split]))].sort();
    const perDay = Array.from({ length: count }, () => ({}));
    for (const d of days) {
      const slot = perDay[Number(d.date.slice(8, 10)) - 1];
      slot[d[split]] = (slot[d[split]] || 0) + d.credits;
    }
    const top = Math.max(1, ...perDay.map((s) => Object.values(s).reduce((a, b) => a + b, 0)));
    const W = 900, H = 220, left = 56, bottom = 24, step = (W - left) / count, ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H + 28}`);
    const el = (name, attrs, text) => {
      const node = document.createElementNS(ns, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.appendChild(node);
      return node;
    };
    el("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" });
    el("text", { x: left - 6, y: 12, class: "tick", "text-anchor": "end" }, fmt(top));
    el("text", { x: left - 6, y: H - bottom, class: "tick", "text-anchor": "end" }, "0");
    perDay.forEach((slot, i) => {
      let base = H - bottom;
      series.forEach((name, k) => {
        const h = ((slot[name] || 0) / top) * (H - bottom - 8);
        if (!h) return;
        base -= h;
        const bar = el("rect", { x: left + i * step + 1, y: base, width: Math.max(1, step - 2), height: h, fill: PALETTE[k % PALETTE.length], class: "bar" });
        const tip = document.createElementNS(ns, "title");
        tip.textContent = `${dayName(`${month}-${String(i + 1).padStart(2, "0")}`)}: ${name} ${fmt(slot[name])} credits`;
        bar.appendChild(tip);
      });
      if (i % 5 === 0 || i === count - 1) el("text", { x: left + (i + 0.5) * step, y: H - 6, class: "tick", "text-anchor": "middle" }, String(i + 1));
    });
    series.forEach((name, k) => {
      el("rect", { x: left + k * 150, y: H + 10, width: 12, height: 12, fill: PALETTE[k % PALETTE.length] });
      el("text", { x: left + k * 150 + 18, y: H + 21, class: "legend" }, name);
    });
    $("usage-chart").replaceChildren(svg);
  }

  async function refreshUsage(force) {
    const select = $("usage-month");
    const month = select.value || null;
    if (!force && month && month !== select.options[0].value) return;  // an earlier month does not change
    const response = await api(`/v1/usage${month ? `?month=${month}` : ""}`);
    if (!response || !response.ok) return;
    const u = await response.json();
    if (select.options.length !== u.months.length) {
      select.replaceChildren(...u.months.map((key) => new Option(monthName(key), key)));
    }
    select.value = u.month;
    $("usage-summary").textContent = `${fmt(u.total_credits)} credits in ${monthName(u.month)} (days in UTC)`;
    chart(u.days, $("usage-split").value, u.month);
    rows("by-model", u.by_model, (r) => [[r.model], [fmt(r.requests), true], [fmt(r.credits), true]]);
    rows("by-tier", u.by_tier, (r) => [[r.action], [fmt(r.requests), true], [fmt(r.credits), true]]);
    rows("usage-days", u.days, (r) => [[dayName(r.date)], [r.model], [r.action], [fmt(r.requests), true], [fmt(r.credits), true]]);
    lastUsage = u;
  }

  async function refreshInvoices() {
    const response = await api("/v1/invoices");
    if (!response || !response.ok) return;
    const { invoices } = await response.json();
    $("no-invoices").hidden = invoices.length > 0;
    rows("invoices", invoices, (d) => {
      let pdf = "not rendered yet";
      if (d.pdf) {
        pdf = document.createElement("a");
        pdf.href = d.pdf;
        pdf.textContent = "Download";
        pdf.setAttribute("download", "");
      }
      const status = d.status === "final" ? `Issued ${issued(d.issue_date)}` : "Draft (not issued yet)";
      return [[d.number || "—"], [d.refers_to ? `${d.title} to ${d.refers_to}` : d.title], [monthName(d.month)],
              [status], [`${d.currency} ${Number(d.total).toLocaleString(undefined, { minimumFractionDigits: 2 })}`, true], [pdf]];
    });
  }

  function signedIn() {
    $("login").hidden = true;
    $("login-error").hidden = true;
    $("login-error").textContent = "";
    $("balance").hidden = false;
    $("logout").hidden = false;
  }

  function login(message) {
    clearTimeout(timer);
    $("balance").hidden = true;
    $("logout").hidden = true;
    $("org").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const response = await api("/v1/balance");
      if (!response) return;
      const body = await response.json();
      signedIn();
      if (response.ok) showBalance(body);
      else $("org").textContent = body.error;  // e.g. 404: no balance computed yet
      await Promise.all([refreshUsage(false), refreshInvoices()]);
    } catch (err) {
      console.warn("refresh failed", err);
    }
    timer = setTimeout(refresh, window.BALANCE_REFRESH_MS || 3000);
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/session", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("token").value.trim() }) });
    $("token").value = "";
    if (!response.ok) return login((await response.json()).error);
    refresh();
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/session/end", { method: "POST", credentials: "same-origin" });
    login();
  });
  $("usage-month").addEventListener("change", () => refreshUsage(true));
  $("usage-split").addEventListener("change", () => {
    if (lastUsage) chart(lastUsage.days, $("usage-split").value, lastUsage.month);
  });
  refresh();
})();
