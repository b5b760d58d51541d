// The customer page: keeps the API token in this tab only and polls GET /v1/balance.
(function () {
  const KEY = "billing.token";
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString("en-US");
  let timer = null;

  function rows(tableId, items, cells) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      for (const [text, numeric] of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;
        if (numeric) td.className = "num";
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function show(b) {
    $("org").textContent = `${b.org_id} · ${b.plan} plan`;
    $("credits-left").textContent = fmt(b.credits_left);
    $("consumed").textContent = fmt(b.consumed_credits);
    $("month").textContent = b.month;
    $("overage").textContent = fmt(b.overage_credits);
    $("overage-amount").textContent = b.overage_amount === null ? "not billed" : `${b.overage_amount} ${b.currency}`;
    $("as-of").textContent = b.as_of || "no events yet";
    $("updated").textContent = b.computed_at;
    rows("grants", b.grants, (g) => [[g.grant_id], [g.kind], [fmt(g.credits), true], [fmt(g.credits_left), true], [g.expires_at]]);
    rows("by-model", b.usage.by_model, (u) => [[u.model], [fmt(u.requests), true], [fmt(u.credits), true]]);
    rows("by-tier", b.usage.by_tier, (u) => [[u.action], [fmt(u.requests), true], [fmt(u.credits), true]]);
    rows("by-model-and-tier", b.usage.by_model_and_tier,
         (u) => [[u.model], [u.action], [fmt(u.requests), true], [fmt(u.credits), true]]);
    $("login").hidden = true;
    $("balance").hidden = false;
  }

  function login(message) {
    clearTimeout(timer);
    sessionStorage.removeItem(KEY);
    $("balance").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  async function refresh() {
    const token = sessionStorage.getItem(KEY);
    if (!token) return login();
    try {
      const response = await fetch("/v1/balance", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      if (response.status === 401) return login("That token is not valid (or was revoked).");
      const body = await response.json();
      if (response.ok) show(body);
      else $("org").textContent = body.error;  // e.g. 404: no balance computed yet
    } catch (err) {
      console.warn("balance refresh failed", err);
    }
    timer = setTimeout(refresh, window.BALANCE_REFRESH_MS || 3000);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    refresh();
  });
  $("logout").addEventListener("click", () => login());
  refresh();
})();
