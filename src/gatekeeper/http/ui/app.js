// gatekeeper usage dashboard: one static page, data from the /v1 API, live over SSE.
// No build step and no network beyond this server: the chart library is vendored (uPlot).
"use strict";

(function () {
  const TOKEN_KEY = "gatekeeper.token";
  const CLASS_COLORS = {
    allowed: "#16a34a",
    allowed_offline: "#65a30d",
    quota: "#f59e0b",
    rate: "#f97316",
    spend_cap: "#dc2626",
    not_entitled: "#8b5cf6",
    unauthenticated: "#64748b",
    bad_request: "#0ea5e9",
    unavailable: "#be123c",
    other: "#94a3b8",
  };
  const CLASS_LABELS = {
    allowed: "admitted",
    allowed_offline: "admitted offline",
    quota: "quota exhausted",
    rate: "rate limited",
    spend_cap: "spend cap",
    not_entitled: "not entitled",
    unauthenticated: "unauthenticated",
    bad_request: "bad request",
    unavailable: "store unavailable",
    other: "other",
  };
  const SERIES_COLORS = ["#4f46e5", "#0ea5e9", "#16a34a", "#f59e0b", "#db2777", "#7c3aed", "#0d9488", "#ea580c"];

  const $ = (id) => document.getElementById(id);
  const state = { token: null, me: null, source: null, view: null, timers: [], charts: {} };

  // ---- small DOM helpers (text only: never innerHTML with data) ------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }
  function show(id, visible) { $(id).hidden = !visible; }

  // ---- formatting ---------------------------------------------------------------------
  const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const rateFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
  function num(n) { return n === null || n === undefined ? "–" : intFmt.format(n); }
  // one money format everywhere (money.js = gatekeeper.money.format_money)
  function money(amount, currency) {
    if (amount === null || amount === undefined) return "–";
    return window.gatekeeperMoney.formatMoney(amount, currency);
  }
  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }
  function clock(iso) {
    return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function until(iso) {
    if (!iso) return "";
    let s = Math.max(0, Math.round((new Date(iso) - Date.now()) / 1000));
    if (s < 60) return `${s} s`;
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60);
    if (d) return `${d} d ${hh} h`;
    if (hh) return `${hh} h ${mm} min`;
    return `${mm} min`;
  }
  function level(ratio) { return ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : ""; }

  // ---- token and API ------------------------------------------------------------------
  function hashParams() { return new URLSearchParams(location.hash.replace(/^#\/?/, "")); }
  function takeTokenFromUrl() {
    const params = hashParams();
    const token = params.get("token");
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.title)) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }
  async function api(method, path, body) {
    const headers = { authorization: `Bearer ${state.token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
  function banner(message) {
    const el = $("banner");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // ---- live connection ----------------------------------------------------------------
  function setLive(mode, text) {
    $("live").dataset.state = mode;
    setText("live-text", text);
  }
  function closeStream() {
    if (state.source) { state.source.close(); state.source = null; }
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
  }
  function openStream(path, handlers) {
    closeStream();
    const url = `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(state.token)}`;
    const source = new EventSource(url);
    state.source = source;
    setLive("retrying", "connecting…");
    source.onopen = () => setLive("live", "live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("idle", "disconnected");
        // EventSource gives up on a non-200 answer: try again later ourselves.
        setTimeout(() => { if (state.source === source) openStream(path, handlers); }, 5000);
      } else {
        setLive("retrying", "reconnecting…");
      }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => {
        let data;
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        fn(data);
      });
    }
  }

  // ---- charts -------------------------------------------------------------------------
  function makeChart(key, container, series, data, opts) {
    const old = state.charts[key];
    if (old) { old.plot.destroy(); old.observer.disconnect(); }
    container.textContent = "";
    const width = Math.max(container.clientWidth, 300);
    const plot = new uPlot(Object.assign({
      width, height: 240,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" } },
        { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" }, size: 56 },
      ],
      series: [{}].concat(series),
    }, opts || {}), data, container);
    const observer = new ResizeObserver(() => {
      const w = Math.max(container.clientWidth, 300);
      if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 240 });
    });
    observer.observe(container);
    state.charts[key] = { plot, observer, signature: series.map((s) => s.label).join("|") };
    return state.charts[key];
  }
  function destroyCharts() {
    for (const c of Object.values(state.charts)) { c.plot.destroy(); c.observer.disconnect(); }
    state.charts = {};
  }

  // ---- views --------------------------------------------------------------------------
  function showView(name) {
    for (const v of ["login", "operator", "customer"]) show(`view-${v}`, v === name);
    state.view = name;
  }

  function renderLogin(message) {
    closeStream();
    destroyCharts();
    showView("login");
    show("nav", false); show("role", false); show("signout", false);
    setLive("idle", "offline");
    const err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("token-input").focus();
  }

  // operator ---------------------------------------------------------------------------
  function renderStats(s) {
    setText("op-updated", `updated ${clock(s.at)}`);
    const rates = s.rates || {};
    let total = 0, admitted = 0;
    for (const [cls, r] of Object.entries(rates)) {
      total += r;
      if (cls === "allowed" || cls === "allowed_offline") admitted += r;
    }
    setText("kpi-rate", rateFmt.format(total));
    setText("kpi-rate-note", `last ${s.rate_window_s} s`);
    setText("kpi-allowed", total ? pctFmt.format(admitted / total) : "–");
    setText("kpi-denied", rateFmt.format(total - admitted));

    // chart: admitted first, then every denial class present in the window
    const classes = Object.keys(s.series || {}).sort((a, b) =>
      Object.keys(CLASS_COLORS).indexOf(a) - Object.keys(CLASS_COLORS).indexOf(b));
    if (!classes.includes("allowed")) classes.unshift("allowed");
    const zeros = s.seconds.map(() => 0);
    const data = [s.seconds].concat(classes.map((c) => (s.series[c] || zeros)));
    const series = classes.map((c) => ({
      label: CLASS_LABELS[c] || c, stroke: CLASS_COLORS[c] || "#94a3b8", width: 2,
      fill: c === "allowed" ? "rgba(22,163,74,.08)" : undefined, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? "–" : `${intFmt.format(v)}/s`),
    }));
    const signature = series.map((x) => x.label).join("|");
    const existing = state.charts.op;
    if (existing && existing.signature === signature) existing.plot.setData(data);
    else makeChart("op", $("op-chart"), series, data, { scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(5, max * 1.15)] } } });

    // denials by reason
    const denials = Object.entries(s.denials || {});
    const list = $("op-denials");
    list.textContent = "";
    if (!denials.length) list.append(h("li", { class: "empty", text: "No denials in the last minute." }));
    const top = Math.max(1, ...denials.map(([, n]) => n));
    for (const [cls, n] of denials) {
      const fill = h("div", { class: "fill" });
      fill.style.width = `${(100 * n) / top}%`;
      fill.style.background = CLASS_COLORS[cls] || "#94a3b8";
      list.append(h("li", { "data-reason": cls },
        h("span", { class: "label", text: CLASS_LABELS[cls] || cls }),
        h("div", { class: "track" }, fill),
        h("span", { class: "value", text: num(n) })));
    }

    // top customers
    const body = $("op-top");
    body.textContent = "";
    if (!s.top_customers.length) body.append(h("tr", {}, h("td", { colspan: "3", class: "empty", text: "No traffic in the last minute." })));
    for (const c of s.top_customers) {
      body.append(h("tr", {},
        h("td", {}, h("a", { href: `#customer=${encodeURIComponent(c.customer)}`, text: c.customer })),
        h("td", { class: "num", text: num(c.decisions) }),
        h("td", { class: `num${c.denied ? " denied" : ""}`, text: num(c.denied) })));
    }

    // stream lag
    const lag = s.lag;
    if (lag) {
      setText("op-group", `consumer group ${lag.group}`);
      setText("lag-pending", num(lag.pending));
      // lag: from Redis 7, counted by gatekeeper on 6.2 (the embedded Redis); null = unreadable
      const atLeast = lag.lag_capped ? "≥ " : "";
      setText("lag-lag", lag.lag === null ? "unavailable" : atLeast + num(lag.lag));
      setText("lag-length", num(lag.length));
      setText("lag-missing", num(lag.streams_without_group));
      let backlog, note;
      if (lag.lag !== null) {
        backlog = lag.pending + lag.lag;
        note = lag.streams_without_group && lag.pending === 0 && lag.lag
          ? "no billing worker has read the streams yet"
          : "usage events not yet billed";
      } else {
        backlog = lag.pending;
        note = "read, not yet acknowledged (lag unavailable)";
      }
      setText("kpi-lag", atLeast + num(backlog));
      setText("kpi-lag-note", note);
    }

    renderAlerts($("op-alerts"), s.alerts || [], true);
  }

  // Money over every customer: the billing store's day totals and month spend, and the live
  // block episodes (GET /v1/revenue, /v1/top-spenders, /v1/blocked).
  async function loadMoney() {
    const today = new Date().toISOString().slice(0, 10);
    const first = `${today.slice(0, 8)}01`;
    let revenue, spenders, blocked;
    try {
      [revenue, spenders, blocked] = await Promise.all([
        api("GET", `/v1/revenue?from=${first}&to=${today}`),
        api("GET", `/v1/top-spenders?month=${today}&limit=5`),
        api("GET", "/v1/blocked?limit=20"),
      ]);
    } catch (e) {
      if (state.view === "operator") setText("kpi-rev-today-note", `unavailable: ${e.message}`);
      return;
    }
    if (state.view !== "operator") return;
    const cur = revenue.currency;
    const day = revenue.days.find((d) => d.day === today && d.currency === cur);
    setText("kpi-rev-today", money(day ? day.amount : "0", cur));
    setText("kpi-rev-today-note", `${num(day ? day.events : 0)} billed events, UTC day`);
    setText("kpi-rev-month", money(revenue.total, cur));
    setText("kpi-rev-month-note", `${num(revenue.events)} billed events since ${first}`);
    setText("kpi-blocked", num(blocked.count));

    const body = $("op-spenders");
    body.textContent = "";
    if (!spenders.spenders.length) body.append(h("tr", {}, h("td", { colspan: "3", class: "empty", text: "Nothing billed this month yet." })));
    for (const s of spenders.spenders) {
      body.append(h("tr", { "data-customer": s.customer },
        h("td", {}, h("a", { href: `#customer=${encodeURIComponent(s.customer)}`, text: s.customer })),
        h("td", { class: "num", text: num(s.events) }),
        h("td", { class: "num", text: money(s.amount, s.currency) })));
    }

    const list = $("op-blocked");
    list.textContent = "";
    if (!blocked.blocked.length) list.append(h("tr", {}, h("td", { colspan: "4", class: "empty", text: "No customer is blocked." })));
    for (const b of blocked.blocked) {
      const by = b.cause === "rate_limited" ? `${b.feature} rate limit` : b.feature ? `${b.feature} quota` : "spend cap";
      const at = b.feature ? num(b.limit) : money(b.limit_amount, b.currency);
      list.append(h("tr", { "data-customer": b.customer },
        h("td", {}, h("a", { href: `#customer=${encodeURIComponent(b.customer)}`, text: b.customer })),
        h("td", { text: by }),
        h("td", { class: "num", text: at }),
        h("td", { text: when(b.until) })));
    }
    if (blocked.count > blocked.blocked.length) {
      list.append(h("tr", {}, h("td", { colspan: "4", class: "muted", text: `and ${num(blocked.count - blocked.blocked.length)} more` })));
    }
  }

  async function renderOperator() {
    closeStream();
    destroyCharts();
    showView("operator");
    $("nav-overview").setAttribute("aria-current", "page");
    $("customer-picker").value = "";
    openStream("/v1/stream", { stats: renderStats });
    loadMoney();
    state.timers.push(setInterval(loadMoney, 10000));
  }

  async function fillPicker() {
    const picker = $("customer-picker");
    try {
      const data = await api("GET", "/v1/customers");
      const ids = (data.customers || []).map((c) => c.id).sort();
      picker.length = 1;
      for (const id of ids) picker.append(h("option", { value: id, text: id }));
    } catch (e) {
      picker.length = 1;
      picker.append(h("option", { value: "", disabled: true, text: `customers unavailable (${e.message})` }));
    }
  }

  // alerts (both views) ---------------------------------------------------------------
  function alertText(a) {
    const subject = a.feature || "spend";
    switch (a.kind) {
      case "threshold":
        if (a.alert_at !== null && a.alert_at !== undefined) {
          return a.feature ? `${a.feature} reached ${num(a.alert_at)}` : `Spend reached ${money(a.alert_at, live.lastUsage && live.lastUsage.currency)}`;
        }
        return `${a.threshold}% of ${a.feature ? a.feature : "the spend cap"} reached`;
      case "overage": return `${subject} is past its soft limit`;
      case "spend_cap": return "Spend cap reached";
      case "forecast": return `${subject} projected to reach its ${a.feature ? "limit" : "cap"} before the period ends`;
      case "anomaly": return `Unusual ${subject} usage today`;
      case "blocked":
        if (causeOf(a) === "rate_limited") return `Blocked: ${a.feature} rate limited (over ${num(a.limit)} at a time, refused again and again) since ${when(a.period_start)}`;
        return a.feature ? `Blocked: ${a.feature} quota used up until ${when(a.period_end)}` : `Blocked: spend cap of ${money(a.limit, live.lastUsage && live.lastUsage.currency)} reached`;
      case "resumed":
        if (causeOf(a) === "rate_limited") return `${a.feature} no longer rate limited`;
        return a.feature ? `${a.feature} available again` : "Spending allowed again";
      default: return `${a.kind} alert on ${subject}`;
    }
  }
  function renderAlerts(list, alerts, withCustomer, freshIds) {
    list.textContent = "";
    if (!alerts.length) list.append(h("li", { class: "empty", text: "No alerts." }));
    for (const a of alerts) {
      const sev = a.kind === "resumed" ? "ok" : a.kind === "blocked" || a.kind === "spend_cap" || a.kind === "overage" || a.threshold >= 100 ? "bad" : a.kind === "forecast" || a.kind === "anomaly" ? "info" : "";
      list.append(h("li", { class: `alert${freshIds && freshIds.has(a.id) ? " fresh" : ""}`, "data-kind": a.kind },
        h("span", { class: `sev ${sev}` }),
        h("div", {},
          h("div", { class: "title", text: alertText(a) }),
          h("div", { class: "meta" },
            withCustomer ? [h("a", { href: `#customer=${encodeURIComponent(a.customer)}`, text: a.customer }), " · "] : null,
            when(a.at)))));
    }
  }

  // customer ----------------------------------------------------------------------------
  const live = { customer: null, alerts: new Map(), history: [], lastUsage: null, forecastAt: 0, forecastTimer: null };

  function featureCard(f) {
    const limited = f.limit !== null && f.limit !== undefined && f.limit > 0;
    const ratio = limited ? f.used / f.limit : 0;
    const fill = h("div", { class: `fill ${level(ratio)}` });
    fill.style.width = `${Math.min(100, ratio * 100)}%`;
    const unit = f.unit ? ` ${f.unit}` : "";
    const kind = f.kind === "rate" ? `rate · per ${f.period || "window"}` : `${f.period || "period"} quota${f.enforcement ? ` · ${f.enforcement}` : ""}`;
    // a feature's quota and its rate limit are two cards: `feature-<f>` / `rate-<f>`
    const tid = f.kind === "rate" ? `rate-${f.feature}` : `feature-${f.feature}`;
    return h("div", { class: "feature", "data-feature": f.feature, "data-kind": f.kind, "data-testid": tid },
      h("div", { class: "feature-head" },
        h("span", { class: "feature-name", text: f.feature }),
        h("span", { class: "tag", text: kind })),
      h("div", { class: "figure" },
        h("span", { class: "used", "data-testid": f.kind === "rate" ? `rate-used-${f.feature}` : `used-${f.feature}`, text: num(f.used) }),
        h("span", { class: "of", text: limited ? ` / ${num(f.limit)}${unit}` : `${unit} · no limit` })),
      h("div", { class: "meter", role: "meter", "aria-valuemin": "0", "aria-valuemax": limited ? String(f.limit) : null, "aria-valuenow": String(f.used) }, fill),
      h("div", { class: "feature-foot" },
        h("span", { text: limited ? `${num(f.remaining)} left (${pctFmt.format(Math.min(ratio, 9.99))} used)` : "" }),
        h("span", { title: f.reset ? new Date(f.reset).toString() : "", text: f.reset ? `resets in ${until(f.reset)}` : "" })),
      f.kind === "quota" && blockOf(f.feature, "quota_exhausted")
        ? blockNote(blockOf(f.feature, "quota_exhausted"), `the ${f.period || "period"}'s ${num(f.limit)}${unit} are used up`,
          `Requests are refused until the reset (${f.reset ? when(f.reset) : "period end"}); a larger plan or a grant lifts it sooner.`)
        : f.kind === "rate" && blockOf(f.feature, "rate_limited")
          ? blockNote(blockOf(f.feature, "rate_limited"), `requests keep going over ${num(f.limit)} per ${f.period || "window"}`,
            "Requests above the rate are refused; slow down (each refusal says when to retry) and it ends after 10 s without one, or a larger plan raises the rate.")
          : null);
  }

  function renderSpend(spend, currency) {
    const box = $("cu-spend");
    box.textContent = "";
    if (!spend) {
      box.append(h("p", { class: "muted", text: "No spending cap applies. Set one below to follow your spend against it." }));
      setText("cu-spend-period", "");
      return;
    }
    const cap = spend.cap === null || spend.cap === undefined ? null : Number(spend.cap);
    const ratio = cap ? Number(spend.spent) / cap : 0;
    const fill = h("div", { class: `fill ${level(ratio)}` });
    fill.style.width = `${Math.min(100, ratio * 100)}%`;
    const cur = spend.currency || currency;
    box.append(h("div", { class: "spend" },
      h("div", { class: "figure" },
        h("span", { class: "used", "data-testid": "spend-spent", text: money(spend.spent, cur) }),
        h("span", { class: "of", text: cap !== null ? ` / ${money(spend.cap, cur)} cap` : " · no cap" })),
      cap !== null ? h("div", { class: "meter" }, fill) : null,
      h("dl", { class: "facts" },
        h("div", {}, h("dt", { text: "Remaining" }), h("dd", { text: spend.remaining === null || spend.remaining === undefined ? "–" : money(spend.remaining, cur) })),
        h("div", {}, h("dt", { text: "Period ends" }), h("dd", { text: spend.reset ? when(spend.reset) : "–" }))),
      blockOf("", "spend_cap") ? blockNote(blockOf("", "spend_cap"), "the spend cap is reached",
        `Paid requests are refused until ${spend.reset ? when(spend.reset) : "the period ends"}; raise your cap below to lift it now.`) : null));
    setText("cu-spend-period", spend.reset ? `resets in ${until(spend.reset)}` : "");
  }

  function renderUsage(u) {
    live.lastUsage = u;
    setText("cu-name", u.customer);
    setText("cu-plan", u.plan ? `${u.plan} plan` : "");
    setText("cu-updated", `updated ${clock(u.at || new Date().toISOString())}`);
    const box = $("cu-features");
    box.textContent = "";
    const features = u.features || [];
    if (!features.length) box.append(h("p", { class: "muted", text: "No metered limits on this plan." }));
    for (const f of features) box.append(featureCard(f));
    renderGrants(u.grants || []);
    renderDenials(u.denials_today);
    renderSpend(u.spend, u.currency);
    if (!$("cap-currency").textContent && u.currency) setText("cap-currency", `(${u.currency})`);
    pushHistory(u);
    refreshForecastSoon();
  }

  // Grants are drawn on before the plan's limit, so their units are not in a feature's
  // "used": each grant's balance is shown beside the features.
  function renderGrants(grants) {
    const box = $("cu-grants");
    box.textContent = "";
    box.hidden = !grants.length;
    if (!grants.length) return;
    box.append(h("h3", { text: "Grants (used before the plan's limits)" }));
    const list = h("ul", { class: "grant-list" });
    for (const g of grants) {
      const state = g.expired ? "expired" : g.expires_at ? `expires ${when(g.expires_at)}` : "never expires";
      list.append(h("li", { "data-testid": `grant-${g.id}`, "data-feature": g.feature },
        h("span", { class: "feature-name", text: g.feature }),
        h("span", { text: ` ${num(g.remaining)} of ${num(g.amount)} left` }),
        h("span", { class: "muted small", text: ` · ${num(g.used)} used · ${state}` })));
    }
    box.append(list);
  }

  // Requests refused today (UTC day), by reason, as every serving process counted them.
  const REASONS = { quota: "quota used up", rate: "rate limited", spend_cap: "spend cap reached",
    not_entitled: "not in your plan", unauthenticated: "bad or missing key",
    bad_request: "malformed request", unavailable: "service unavailable", other: "other" };
  function renderDenials(d) {
    const box = $("cu-denials");
    if (!d) { box.textContent = ""; return; }
    const parts = Object.entries(d.by_reason || {}).map(([r, n]) => `${num(n)} ${REASONS[r] || r}`);
    box.textContent = d.total
      ? `Refused today (${d.date}, UTC): ${num(d.total)} — ${parts.join(", ")}`
      : `No request refused today (${d.date}, UTC).`;
  }

  // The forecast follows usage, but costs a billing-store query: at most one every 5 s.
  function refreshForecastSoon() {
    if (live.forecastTimer || !live.customer) return;
    const wait = Math.max(0, live.forecastAt + 5000 - Date.now());
    const customer = live.customer;
    live.forecastTimer = setTimeout(() => {
      live.forecastTimer = null;
      if (live.customer === customer && state.view === "customer") loadForecast(customer);
    }, wait);
  }

  // The x range from the points themselves (at least the last minute): with one or two
  // points uPlot's own guess spans years.
  function historyRange() {
    const ts = live.history.map((p) => p.t);
    const hi = ts.length ? ts[ts.length - 1] : Date.now() / 1000;
    return [Math.min(ts.length ? ts[0] : hi, hi - 60), hi];
  }

  function pushHistory(u) {
    const t = (u.at ? new Date(u.at) : new Date()).getTime() / 1000;
    const point = { t };
    for (const f of u.features || []) if (f.limit) point[f.feature] = (100 * f.used) / f.limit;
    if (u.spend && u.spend.cap && Number(u.spend.cap) > 0) point["spend"] = (100 * Number(u.spend.spent)) / Number(u.spend.cap);
    const last = live.history[live.history.length - 1];
    if (last && last.t >= t) live.history[live.history.length - 1] = point; else live.history.push(point);
    if (live.history.length > 600) live.history.shift();
    const names = Object.keys(point).filter((k) => k !== "t");
    const series = names.map((n, i) => ({
      label: n === "spend" ? "spend vs cap" : n, stroke: SERIES_COLORS[i % SERIES_COLORS.length], width: 2,
      points: { show: live.history.length < 3 },
      value: (uu, v) => (v === null || v === undefined ? "–" : `${v.toFixed(1)} %`),
    }));
    const data = [live.history.map((p) => p.t)].concat(names.map((n) => live.history.map((p) => (p[n] === undefined ? null : p[n]))));
    const existing = state.charts.cu;
    const signature = series.map((s) => s.label).join("|");
    if (existing && existing.signature === signature) existing.plot.setData(data);
    else if (names.length) makeChart("cu", $("cu-chart"), series, data, { scales: { x: { time: true, range: historyRange }, y: { range: (uu, min, max) => [0, Math.max(100, max * 1.1)] } } });
    else $("cu-chart").textContent = "No limited features to chart.";
  }

  function onAlert(a, quiet) {
    if (live.alerts.has(a.id)) return;
    live.alerts.set(a.id, a);
    const sorted = [...live.alerts.values()].sort((x, y) => (x.at < y.at ? 1 : -1)).slice(0, 50);
    renderAlerts($("cu-alerts"), sorted, false, quiet ? null : new Set([a.id]));
    if (a.kind === "blocked" || a.kind === "resumed") {
      if (live.lastUsage) renderUsage(live.lastUsage);
      refreshForecastSoon();  // its verdict says "blocked now" while an episode is open
    }
  }

  // Blocked now, per feature ("" = the spend cap): the newest blocked/resumed alert of this
  // period says so (the server announces a block on its first refusal, a resumption when a
  // raised cap or limit or a grant ends it; the period's end ends it too).
  // (per cause: a feature's quota and its rate limit block apart). A run of rate-limit
  // refusals has no window end: it lasts until its 'resumed'.
  function causeOf(a) { return a.cause || (a.feature ? "quota_exhausted" : "spend_cap"); }
  function blockOf(feature, cause) {
    let newest = null;
    for (const a of live.alerts.values()) {
      if ((a.kind !== "blocked" && a.kind !== "resumed") || (a.feature || "") !== feature) continue;
      if (causeOf(a) !== cause) continue;
      if (!newest || a.at > newest.at) newest = a;
    }
    if (!newest || newest.kind !== "blocked") return null;
    if (cause !== "rate_limited" && newest.period_end && new Date(newest.period_end) <= new Date()) return null;
    return newest;
  }
  function blockNote(block, what, lift) {
    return h("div", { class: "blocked-note", "data-testid": "blocked", role: "status" },
      h("strong", { text: `Blocked: ${what}` }),
      h("span", { text: ` since ${when(block.at)}. ${lift}` }));
  }

  // Older alerts from the alert log (billing store), beside the recent ones the stream sends.
  async function loadAlertLog(customer) {
    try {
      const data = await api("GET", `/v1/customers/${encodeURIComponent(customer)}/alerts?limit=50`);
      if (live.customer === customer) for (const a of data.alerts || []) onAlert(a, true);
    } catch (e) {
      // no billing store on this process: the stream's recent alerts are all there is
    }
  }

  // What the projection means under the limit's enforcement: a hard limit or a blocking cap
  // cuts the customer off ("blocked around <date>"), it is never "over by" anything.
  function outlookVerdict(r) {
    const around = r.reached ? ` around ${when(r.reached)}` : "";
    // refused already (an open block episode of this limit): now, not a projected time
    const blockedNow = r.name === "spend" ? blockOf("", "spend_cap") : blockOf(r.name, "quota_exhausted");
    switch (r.outlook) {
      case "blocked":
        return h("span", { class: "verdict bad", "data-testid": `verdict-${r.name}`,
          text: `blocked${blockedNow ? " now" : around}${r.name === "spend" ? " (spend cap)" : " (limit)"}` });
      case "over_limit":
        return h("span", { class: "verdict warn", text: r.enforcement === "alert"
          ? `over the cap by ${r.fmt(r.projected - r.limit)} (alert only)`
          : `over by ${r.fmt(r.projected - r.limit)}, billed as overage` });
      case "within_limit":
        return h("span", { class: "verdict ok", text: "within limit" });
      default:
        return h("span", { class: "muted", text: "no limit" });
    }
  }

  async function loadForecast(customer) {
    live.forecastAt = Date.now();
    const box = $("cu-forecast");
    let data;
    try {
      data = await api("GET", `/v1/customers/${encodeURIComponent(customer)}/forecast`);
    } catch (e) {
      box.textContent = "";
      box.append(h("p", { class: "muted", text: `Forecast unavailable: ${e.message}` }));
      return;
    }
    const rows = (data.features || []).map((f) => ({ name: f.feature, unit: "", used: f.used, projected: f.projected, low: f.low, high: f.high, limit: f.limit, over: f.exceeds_limit, outlook: f.outlook, reached: f.limit_reached_at, enforcement: f.enforcement, fmt: num }));
    if (data.spend) {
      const cur = live.lastUsage && live.lastUsage.currency;
      const n = (v) => (v === null || v === undefined ? null : Number(v));
      rows.push({ name: "spend", used: n(data.spend.used), projected: n(data.spend.projected), low: n(data.spend.low), high: n(data.spend.high), limit: n(data.spend.limit), over: data.spend.exceeds_limit, outlook: data.spend.outlook, reached: data.spend.limit_reached_at, enforcement: data.spend.enforcement, fmt: (v) => money(v, cur) });
    }
    box.textContent = "";
    if (!rows.length) { box.append(h("p", { class: "muted", text: "Nothing to forecast yet." })); return; }
    const table = h("table", { class: "forecast" },
      h("thead", {}, h("tr", {}, ["Feature", "Used", "Projected", "Limit", "Used · projected · limit", "Outlook"].map((t) => h("th", { text: t })))));
    const tbody = h("tbody");
    for (const r of rows) {
      const scale = Math.max(r.projected || 0, r.limit || 0, r.used || 0, 1);
      const bar = h("div", { class: "projection" });
      const proj = h("div", { class: `proj${r.limit && r.projected > r.limit ? " over" : ""}` });
      proj.style.width = `${(100 * (r.projected || 0)) / scale}%`;
      const now = h("div", { class: "now" });
      now.style.width = `${(100 * (r.used || 0)) / scale}%`;
      bar.append(proj, now);
      if (r.limit) { const lim = h("div", { class: "limit", title: "limit" }); lim.style.left = `calc(${(100 * r.limit) / scale}% - 1px)`; bar.append(lim); }
      const verdict = outlookVerdict(r);
      tbody.append(h("tr", { "data-feature": r.name },
        h("td", {}, h("span", { class: "feature-name", text: r.name })),
        h("td", { text: r.fmt(r.used) }),
        h("td", {}, r.fmt(r.projected), r.low !== null && r.low !== undefined && r.high !== r.low ? h("div", { class: "band", text: `${r.fmt(r.low)} – ${r.fmt(r.high)}` }) : null),
        h("td", { text: r.limit ? r.fmt(r.limit) : "–" }),
        h("td", {}, bar),
        h("td", {}, verdict)));
    }
    table.append(tbody);
    box.append(table);
  }

  // Mutes: a ticked kind is sent to the customer's webhooks, an unticked one is muted.
  async function loadMutes(customer) {
    const box = $("cu-mute-kinds");
    const path = `/v1/customers/${encodeURIComponent(customer)}/alert-mutes`;
    let data;
    try { data = await api("GET", path); } catch (e) { box.textContent = `Unavailable: ${e.message}`; return; }
    const render = (d) => {
      box.textContent = "";
      for (const kind of d.kinds) {
        const input = h("input", { type: "checkbox", "data-testid": `mute-${kind}` });
        input.checked = !d.muted.includes(kind);
        input.addEventListener("change", async () => {
          const muted = [...box.querySelectorAll("input")].filter((i) => !i.checked).map((i) => i.dataset.kind);
          try { render(await api("PUT", path, { muted })); } catch (e) { input.checked = !input.checked; banner(`Could not save: ${e.message}`); }
        });
        input.dataset.kind = kind;
        box.append(h("label", { class: "mute" }, input, ` ${kind.replace("_", " ")}`));
      }
    };
    render(data);
  }

  // From the billing store (what the worker billed): the invoice so far, and units per day
  // over this and the previous period. Refreshed every 30 s: billing lags decisions by the
  // worker's batch, never by more than its lag (operator page).
  async function loadBill(customer) {
    const box = $("cu-bill");
    let inv;
    try { inv = await api("GET", `/v1/customers/${encodeURIComponent(customer)}/invoice`); } catch (e) {
      box.textContent = ""; box.append(h("p", { class: "muted", text: `Unavailable: ${e.message}` })); return;
    }
    setText("cu-bill-period", inv.period_start ? `since ${inv.period_start}` : "");
    box.textContent = "";
    const lines = inv.lines || [];
    const table = h("table", { class: "bill" },
      h("thead", {}, h("tr", {}, ["Feature", "Units", "Amount"].map((t) => h("th", { text: t })))));
    const body = h("tbody");
    for (const l of lines) {
      body.append(h("tr", { "data-feature": l.feature },
        h("td", {}, h("span", { class: "feature-name", text: l.feature }), l.kind && l.kind !== "usage" ? h("span", { class: "muted small", text: ` ${l.kind}` }) : null),
        h("td", { class: "num", text: num(l.quantity) }),
        h("td", { class: "num", text: money(l.amount, inv.currency) })));
    }
    if (!lines.length) body.append(h("tr", {}, h("td", { colspan: "3", class: "muted", text: "Nothing billed yet this period." })));
    table.append(body, h("tfoot", {}, h("tr", {}, h("th", { text: "Total" }), h("th", {}), h("th", { class: "num", "data-testid": "bill-total", text: money(inv.total, inv.currency) }))));
    box.append(table);
  }

  async function loadDaily(customer) {
    const box = $("cu-daily");
    const today = new Date();
    const from = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1)).toISOString().slice(0, 10);
    let rev;
    try { rev = await api("GET", `/v1/customers/${encodeURIComponent(customer)}/revenue?from=${from}&to=${today.toISOString().slice(0, 10)}`); } catch (e) {
      box.textContent = `Unavailable: ${e.message}`; return;
    }
    const days = [...new Set((rev.days || []).map((d) => d.day))].sort();
    const features = [...new Set((rev.days || []).map((d) => d.feature))].sort();
    if (!days.length) { box.textContent = ""; box.append(h("p", { class: "muted", text: "No billed usage in this or the previous period." })); return; }
    const at = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;
    const quantity = new Map((rev.days || []).map((d) => [`${d.day}|${d.feature}`, d.quantity]));
    const data = [days.map(at)].concat(features.map((f) => days.map((d) => quantity.get(`${d}|${f}`) ?? 0)));
    const series = features.map((f, i) => ({ label: f, stroke: SERIES_COLORS[i % SERIES_COLORS.length], width: 2, points: { show: true }, value: (u, v) => (v === null || v === undefined ? "–" : num(v)) }));
    box.dataset.days = String(days.length);
    const span = [at(from), at(today.toISOString().slice(0, 10)) + 86400];  // both periods, to today
    makeChart("daily", box, series, data, { scales: { x: { time: true, range: () => span }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } } });
  }

  async function loadCap(customer) {
    try {
      const cap = await api("GET", `/v1/customers/${encodeURIComponent(customer)}/spend-cap`);
      renderCap(cap);
    } catch (e) {
      $("cap-state").textContent = "";
      $("cap-state").append(h("div", {}, h("dt", { text: "Spending cap" }), h("dd", { text: `unavailable (${e.message})` })));
    }
  }
  function capText(c, currency) { return c ? `${money(c.amount, currency)} · ${c.action}` : "none"; }
  function renderCap(cap) {
    const cur = cap.currency;
    const dl = $("cap-state");
    dl.textContent = "";
    dl.append(
      h("div", {}, h("dt", { text: "Plan cap" }), h("dd", { text: capText(cap.plan_cap, cur) })),
      h("div", {}, h("dt", { text: "Your cap" }), h("dd", { "data-testid": "cap-own", text: capText(cap.own_cap, cur) })),
      h("div", {}, h("dt", { text: "In force" }), h("dd", { text: capText(cap.effective_cap, cur) })));
    if (cap.note) dl.append(h("div", {}, h("dt", { text: "Note" }), h("dd", { "data-testid": "cap-note", text: cap.note })));
    setText("cap-ceiling", cap.ceiling ? `at most ${money(cap.ceiling, cur)}` : "");
    if (cur) setText("cap-currency", `(${cur})`);
  }
  async function saveCap(amount, action) {
    const err = $("cap-error"), ok = $("cap-ok"), input = $("cap-amount");
    err.hidden = true; ok.hidden = true; input.removeAttribute("aria-invalid");
    const buttons = document.querySelectorAll("#cap-form button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const cap = await api("PUT", `/v1/customers/${encodeURIComponent(live.customer)}/spend-cap`, { amount, action });
      renderCap(cap);
      ok.hidden = false;
    } catch (e) {
      const fieldErrors = (e.body && e.body.errors) || [];
      err.textContent = e.status === 422 && fieldErrors.length
        ? fieldErrors.map((f) => `${f.field}: ${f.message}`).join("; ")
        : e.message;
      err.hidden = false;
      if (fieldErrors.some((f) => f.field === "amount")) input.setAttribute("aria-invalid", "true");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function renderCustomer(customer) {
    closeStream();
    destroyCharts();
    showView("customer");
    $("nav-overview").removeAttribute("aria-current");
    if (state.me.role !== "customer") $("customer-picker").value = customer;
    live.customer = customer;
    live.alerts = new Map();
    live.history = [];
    setText("cu-name", customer);
    setText("cu-plan", "");
    setText("cu-updated", "waiting for data…");
    setText("cap-currency", "");
    $("cu-features").textContent = "";
    $("cu-spend").textContent = "";
    $("cu-chart").textContent = "";
    $("cap-error").hidden = true;
    $("cap-ok").hidden = true;
    renderAlerts($("cu-alerts"), [], false);
    openStream(`/v1/customers/${encodeURIComponent(customer)}/stream`, { usage: renderUsage, alert: (a) => onAlert(a, false) });
    loadCap(customer);
    loadMutes(customer);
    loadBill(customer);
    loadDaily(customer);
    state.timers.push(setInterval(() => { loadBill(customer); loadDaily(customer); }, 30000));
    loadForecast(customer);
    loadAlertLog(customer);
    state.timers.push(setInterval(() => loadForecast(customer), 60000));
    // refresh the relative reset times between pushes
    state.timers.push(setInterval(() => { if (live.lastUsage) setText("cu-spend-period", live.lastUsage.spend && live.lastUsage.spend.reset ? `resets in ${until(live.lastUsage.spend.reset)}` : ""); }, 15000));
  }

  // ---- routing ------------------------------------------------------------------------
  async function route() {
    banner("");
    if (!state.me) return;
    const wanted = hashParams().get("customer");
    if (state.me.role === "customer") return renderCustomer(state.me.customer);
    if (wanted) return renderCustomer(wanted);
    return renderOperator();
  }

  async function start() {
    takeTokenFromUrl();
    state.token = sessionStorage.getItem(TOKEN_KEY);
    if (!state.token) return renderLogin();
    try {
      state.me = await api("GET", "/v1/me");
    } catch (e) {
      state.me = null;
      if (e.status === 401 || e.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        return renderLogin("That token was not accepted. Check it and try again.");
      }
      return renderLogin(`The server did not answer: ${e.message}`);
    }
    const operator = state.me.role !== "customer";
    setText("role", operator ? (state.me.role === "admin" ? "operator · admin" : "operator · read-only") : `customer · ${state.me.customer}`);
    show("role", true);
    show("signout", true);
    show("nav", operator);
    if (operator) fillPicker();
    await route();
  }

  function wire() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      start();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.me = null;
      history.replaceState(null, "", location.pathname);
      renderLogin();
    });
    $("customer-picker").addEventListener("change", (ev) => {
      const id = ev.target.value;
      location.hash = id ? `customer=${encodeURIComponent(id)}` : "";
    });
    $("nav-overview").addEventListener("click", (ev) => { ev.preventDefault(); location.hash = ""; });
    $("home").addEventListener("click", (ev) => { ev.preventDefault(); location.hash = ""; });
    window.addEventListener("hashchange", () => {
      if (hashParams().get("token")) { start(); return; }
      route();
    });
    $("cap-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const raw = $("cap-amount").value.trim();
      const action = $("cap-action").value || null;
      saveCap(raw === "" ? null : raw, action);
    });
    $("cap-clear").addEventListener("click", () => { $("cap-amount").value = ""; saveCap(null, null); });
  }

  document.addEventListener("DOMContentLoaded", () => { wire(); start(); });
})();
