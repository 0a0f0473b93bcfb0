// The jupyter-deploy dashboard: plain DOM and fetch, no framework, no build step.
// Every URL is relative so the page also works behind a reverse proxy that mounts the manager under a prefix.
"use strict";

(function () {
  const SESSION_KEY = "jupyter-deploy-dashboard-session";
  const REFRESH_MS = 4000;
  const MAX_LOG_CHARS = 2_000_000;
  const EVENTS_SHOWN = 25;
  const DEPLOY_ROLES = ["admin", "deployer"];

  const state = {
    session: null, // {token, token_id, username, scope, role}
    services: [], // GET /api/services/{name} of every service
    events: [],
    tokens: [],
    users: [],
    usersApi: true, // false once /api/users answered 404 (a manager without user management)
    pending: {}, // action key -> label shown on its button while the call runs
    rendered: {}, // view -> signature of the data last rendered, to skip identical redraws
    refreshTimer: null,
    log: null, // {name, version, controller}
    view: null, // the view shown, as route() settled it
  };

  // ---------------------------------------------------------------- DOM helpers

  function $(id) {
    return document.getElementById(id);
  }

  /** Create an element: attrs hold class, text, dataset, onX handlers or plain attributes; children are nodes or strings. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function enc(part) {
    return encodeURIComponent(part);
  }

  function ago(iso) {
    if (!iso) return "";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 45) return "just now";
    if (seconds < 90) return "1 min ago";
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 5400) return "1 hour ago";
    if (seconds < 86400) return `${Math.round(seconds / 3600)} hours ago`;
    if (seconds < 172800) return "yesterday";
    return `${Math.round(seconds / 86400)} days ago`;
  }

  function localTime(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  /** A <time> whose text says how long ago; refreshTimes() keeps it current between redraws. */
  function timeAgo(iso) {
    if (!iso) return el("span", {class: "muted", text: "-"});
    return el("time", {datetime: iso, title: localTime(iso), dataset: {ago: "1"}, text: ago(iso)});
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll("time[data-ago]")) {
      node.textContent = ago(node.getAttribute("datetime"));
    }
  }

  function badge(text, kind) {
    return el("span", {class: `badge badge-${kind || text}`, text});
  }

  // ---------------------------------------------------------------- messages

  /** The API's messages are sentence fragments ("wrong username or password"); show them as sentences. */
  function sentence(text) {
    const trimmed = String(text).trim();
    return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  }

  /** Show an error until dismissed; one from the auto-refresh goes away by itself once a refresh works again. */
  function showError(message, fromRefresh) {
    $("error-text").textContent = sentence(message);
    $("error").dataset.fromRefresh = fromRefresh ? "1" : "";
    show($("error"), true);
  }

  function clearError() {
    show($("error"), false);
    $("error-text").textContent = "";
  }

  let noticeTimer = null;
  function notify(message) {
    const notice = $("notice");
    notice.textContent = message;
    show(notice, true);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => show(notice, false), 6000);
  }

  /** Show an API failure in plain words; a lapsed session has already sent the user to the login page. */
  function report(error, where) {
    if (error.reason === "session-ended" || error.name === "AbortError") return;
    const text = sentence(error.message || String(error));
    if (where) where.textContent = text;
    else showError(text);
  }

  function reportRefresh(error) {
    if (error.reason === "session-ended" || error.name === "AbortError") return;
    showError(`Could not refresh: ${error.message}`, true);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, reason) {
      super(message);
      this.status = status;
      this.reason = reason;
    }
  }

  /** Call the manager's API; JSON in and out unless raw, errors as ApiError with the API's own message. */
  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = {};
    const sent = state.session ? state.session.token : null;
    if (sent) headers.Authorization = `Bearer ${sent}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: opts.signal,
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "The manager did not answer. Is it running, and is the network up?", "network");
    }
    if (resp.status === 401 && sent && !opts.keepSession) {
      // Several calls may fail together, or one may outlive its session: only the session it used ends.
      if (state.session && state.session.token === sent) {
        endSession("Your session has ended (its token expired or was revoked). Please log in again.");
      }
      throw new ApiError(401, "session ended", "session-ended");
    }
    if (!resp.ok) {
      let message = `${resp.status} ${resp.statusText}`;
      let reason = "http-error";
      try {
        const data = await resp.json();
        message = data.message || message;
        reason = data.reason || reason;
      } catch (_) {
        // Not JSON (a proxy in front of the manager, say): the status line is all there is.
      }
      throw new ApiError(resp.status, message, reason);
    }
    if (opts.raw) return resp;
    return resp.json();
  }

  function canDeploy() {
    return !!state.session && DEPLOY_ROLES.includes(state.session.role);
  }

  function isAdmin() {
    return !!state.session && state.session.role === "admin" && state.session.scope === "admin";
  }

  // ---------------------------------------------------------------- session

  function saveSession(session) {
    state.session = session;
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  function loadSession() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch (_) {
      return null;
    }
  }

  /** Forget the token and go back to the login page with a message. */
  function endSession(message, kind) {
    state.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    stopRefresh();
    stopLog();
    state.rendered = {};
    showLogin(message, kind);
  }

  async function login(event) {
    event.preventDefault();
    const message = $("login-message");
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    message.textContent = "";
    if (!username || !password) {
      message.textContent = "Enter your username and password.";
      return;
    }
    const button = $("login-submit");
    button.disabled = true;
    try {
      const answer = await api("POST", "api/login", {username, password});
      saveSession({token: answer.token, token_id: answer.token_id, username: answer.username, scope: answer.scope});
      const who = await api("GET", "api/whoami");
      saveSession({...state.session, role: who.role});
      $("login-password").value = "";
      startApp();
    } catch (error) {
      state.session = null;
      sessionStorage.removeItem(SESSION_KEY);
      message.classList.remove("info");
      report(error, message);
      $("login-password").value = "";
      $("login-password").focus();
    } finally {
      button.disabled = false;
    }
  }

  async function logout() {
    const session = state.session;
    if (!session) return;
    try {
      // Revoke rather than just forget, so the token is worthless even if it was copied somewhere.
      await api("DELETE", `api/tokens/${enc(session.token_id)}`, undefined, {keepSession: true});
    } catch (error) {
      if (error.status !== 401) {
        showError(`Could not revoke the session's token: ${error.message}`);
      }
    }
    endSession("You are logged out.", "info");
  }

  function showLogin(message, kind) {
    show($("login-view"), true);
    for (const id of ["services-view", "logs-view", "tokens-view", "users-view", "tabs", "session", "notice"]) {
      show($(id), false);
    }
    clearError();
    hideSecret(false);
    const text = $("login-message");
    text.textContent = message || "";
    text.classList.toggle("info", kind === "info");
    // The name is usually still there after a lapsed session; the password is what is left to type.
    ($("login-username").value ? $("login-password") : $("login-username")).focus();
  }

  function startApp() {
    show($("login-view"), false);
    show($("tabs"), true);
    show($("session"), true);
    clearError();
    $("login-message").textContent = "";
    const {username, role, scope} = state.session;
    $("whoami").textContent = `${username} (${role || scope})`;
    show($("users-tab"), isAdmin() && state.usersApi);
    show($("token-form"), canDeploy());
    route();
    if (isAdmin()) probeUsers();
  }

  /** Learn once whether this manager has user management, so the Users tab is not a dead end. */
  async function probeUsers() {
    try {
      await api("GET", "api/users");
    } catch (error) {
      if (error.status === 404) {
        state.usersApi = false;
        show($("users-tab"), false);
      }
    }
  }

  // ---------------------------------------------------------------- routing (the URL fragment picks the view)

  function currentRoute() {
    const [view, ...rest] = location.hash.replace(/^#/, "").split("/");
    return {view: view || "services", args: rest.map(decodeURIComponent)};
  }

  function route() {
    if (!state.session) return;
    const {view, args} = currentRoute();
    const known = {services: "services-view", logs: "logs-view", tokens: "tokens-view", users: "users-view"};
    const usersOk = isAdmin() && state.usersApi;
    const target = known[view] && !(view === "users" && !usersOk) ? view : "services";
    state.view = target;
    for (const [name, id] of Object.entries(known)) show($(id), name === target);
    for (const link of document.querySelectorAll("#tabs a[data-tab]")) {
      const active = link.dataset.tab === target || (target === "logs" && link.dataset.tab === "services");
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (target !== "logs") stopLog();
    if (target === "logs") openLogs(args[0], args[1] || "");
    startRefresh(target);
  }

  function startRefresh(view) {
    stopRefresh();
    const refreshers = {services: refreshServices, tokens: refreshTokens, users: refreshUsers, logs: null};
    const refresh = refreshers[view];
    if (!refresh) return;
    const tick = () => {
      // A hidden tab need not poll; it catches up when it is shown again.
      if (!document.hidden) {
        refresh()
          .then(() => { if ($("error").dataset.fromRefresh) clearError(); })
          .catch(reportRefresh);
      }
      refreshTimes();
    };
    tick();
    state.refreshTimer = setInterval(tick, REFRESH_MS);
  }

  function stopRefresh() {
    clearInterval(state.refreshTimer);
    state.refreshTimer = null;
  }

  // ---------------------------------------------------------------- confirmation dialog

  /** Ask before acting; resolves true only when the user presses the confirming button. */
  function confirmAction(title, text, okLabel, danger) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    const ok = $("confirm-ok");
    ok.textContent = okLabel;
    ok.className = danger ? "danger" : "primary";
    return new Promise((resolve) => {
      const finish = (answer) => {
        ok.removeEventListener("click", onOk);
        $("confirm-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("close", onClose);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const onOk = () => finish(true);
      const onCancel = () => finish(false);
      const onClose = () => finish(false); // Escape
      ok.addEventListener("click", onOk);
      $("confirm-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("close", onClose);
      dialog.showModal();
      // Cancel has the focus: a stray Enter backs out instead of acting.
      $("confirm-cancel").focus();
    });
  }

  /** Confirm, run the call with its button marked busy, then redraw and say what happened. */
  async function act(key, busyLabel, question, call, done) {
    if (!(await confirmAction(...question))) return;
    clearError();
    state.pending[key] = busyLabel;
    renderServices(true);
    try {
      await call();
      notify(done);
    } catch (error) {
      report(error);
    } finally {
      delete state.pending[key];
      await refreshServices(true).catch((error) => report(error));
    }
  }

  // ---------------------------------------------------------------- services

  async function refreshServices(force) {
    const [list, events] = await Promise.all([api("GET", "api/services"), api("GET", "api/events")]);
    const details = await Promise.all(
      list.services.map((s) =>
        api("GET", `api/services/${enc(s.name)}`).catch((error) => {
          // Deleted between the two calls: drop it rather than fail the whole refresh.
          if (error.status === 404) return null;
          throw error;
        }),
      ),
    );
    state.services = details.filter(Boolean);
    // Resource use of running versions; a runtime that cannot tell leaves the column empty.
    const usages = await Promise.all(state.services.map((s) =>
      api("GET", `api/services/${enc(s.name)}/usage`).then((u) => u.usage).catch(() => ({}))));
    state.services.forEach((s, i) => { s.usage = usages[i] || {}; });
    state.events = events.events.slice(0, EVENTS_SHOWN);
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    renderServices(force);
    renderEvents();
    fillServiceChoices();
  }

  /** Redraw only when something changed, and give the focus back to the same control afterwards. */
  function redraw(view, container, data, build) {
    const signature = JSON.stringify(data);
    if (state.rendered[view] === signature) return;
    state.rendered[view] = signature;
    const focused = container.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    container.replaceChildren(...build());
    if (focused) {
      const again = container.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again && !again.disabled) again.focus();
    }
  }

  function renderServices(force) {
    if (force) delete state.rendered.services;
    const data = {services: state.services, pending: state.pending, deploy: canDeploy()};
    redraw("services", $("services"), data, () => {
      if (!state.services.length) {
        return [el("div", {class: "card empty"},
          el("p", {text: "No services yet."}),
          el("p", {class: "muted"}, "Deploy one from a notebook with ", el("code", {text: "jupyter_deploy.deploy(...)"}), "."))];
      }
      return state.services.map(serviceCard);
    });
  }

  function serviceCard(service) {
    const name = service.name;
    const headingId = `service-${name}`;
    const main = service.versions.find((v) => v.version === service.main_version);
    return el("article", {class: "card service", "aria-labelledby": headingId, dataset: {service: name}},
      el("header", {class: "service-head"},
        el("div", {class: "service-title"},
          el("h2", {id: headingId, text: name}),
          badge(service.status),
          el("span", {class: "muted"},
            service.main_version ? `main ${service.main_version}` : "no main version",
            main ? " · since " : "", main ? timeAgo(main.updated) : "",
            service.created_by ? ` · by ${service.created_by}` : "")),
        el("div", {class: "service-links"},
          docsLink(name),
          el("a", {href: `#logs/${enc(name)}`, class: "button", dataset: {key: `logs:${name}`}, "aria-label": `Logs of ${name}`, text: "Logs"}),
          canDeploy() ? actionButton(`delete-service:${name}`, "Delete service", `Delete service ${name}`, "danger",
            () => deleteService(name)) : null)),
      el("div", {class: "table-wrap"}, versionsTable(service)));
  }

  /** The service's docs page, handed this session's token in the fragment (never sent to the server). */
  function docsLink(name) {
    const plain = `services/${enc(name)}/docs`;
    const link = el("a", {href: plain, target: "_blank", rel: "noopener", class: "button",
      dataset: {key: `docs:${name}`}, "aria-label": `API docs of ${name}`, text: "API docs"});
    // Only for the moment of the click, so hovering or copying the link never shows the token.
    const withToken = () => {
      if (!state.session) return;
      link.href = `${plain}#token=${enc(state.session.token)}`;
      setTimeout(() => { link.href = plain; }, 0);
    };
    link.addEventListener("click", withToken);
    link.addEventListener("auxclick", withToken);
    return link;
  }

  function versionsTable(service) {
    const rows = [...service.versions].reverse().map((v) => versionRow(service, v));
    return el("table", {class: "data versions"},
      el("caption", {class: "visually-hidden", text: `Versions of ${service.name}`}),
      el("thead", {}, el("tr", {},
        ["Version", "Status", "Since", "Resources", "Entrypoints"].map((h) => el("th", {scope: "col", text: h})),
        el("th", {scope: "col"}, el("span", {class: "visually-hidden", text: "Actions"})))),
      el("tbody", {}, rows));
  }

  function versionRow(service, v) {
    const isMain = v.version === service.main_version;
    const traffic = service.traffic || {};
    const canary = traffic.canary && traffic.canary.version === v.version ? traffic.canary : null;
    const shadow = (traffic.shadows || []).includes(v.version);
    const stats = shadow && traffic.shadow_stats ? traffic.shadow_stats[v.version] : null;
    const use = (service.usage || {})[v.version];
    return el("tr", {dataset: {version: v.version}, class: isMain ? "is-main" : ""},
      el("td", {}, el("span", {class: "version", text: v.version}), isMain ? badge("main", "main") : null,
        canary ? badge(`canary ${canary.weight}%`, "canary") : null, shadow ? badge("shadow", "shadow") : null,
        stats ? el("div", {class: "muted small", text: `differs ${stats.differ} of ${stats.compared}`}) : null),
      el("td", {}, badge(v.status), v.error ? el("div", {class: "version-error", text: v.error}) : null),
      el("td", {}, timeAgo(v.updated), el("div", {class: "muted small"}, "created ", timeAgo(v.created))),
      el("td", {class: "usage"}, use ? `${use.memory_mb} MB` : "",
        use ? el("div", {class: "muted small", text: `${use.cpu_seconds} s CPU`}) : null),
      el("td", {}, el("ul", {class: "entrypoints"},
        v.entrypoints.map((e) => el("li", {}, el("code", {text: `POST /services/${service.name}/${e}`}))))),
      el("td", {class: "actions"}, canDeploy() ? versionActions(service, v, isMain) : null));
  }

  function versionActions(service, v, isMain) {
    const name = service.name;
    const version = v.version;
    const label = `${name} ${version}`;
    const buttons = [];
    if (!isMain && v.status !== "building") {
      buttons.push(actionButton(`promote:${name}:${version}`, "Promote", `Promote ${label}`, "primary",
        () => promote(name, version)));
    }
    if (v.status === "running") {
      buttons.push(actionButton(`stop:${name}:${version}`, "Stop", `Stop ${label}`, "",
        () => versionAction(name, version, "stop")));
    } else if (v.status === "stopped" || v.status === "failed") {
      buttons.push(actionButton(`start:${name}:${version}`, "Start", `Start ${label}`, "",
        () => versionAction(name, version, "start")));
    }
    // The API refuses to delete the main version while others exist; offer only what can succeed.
    if (!isMain || service.versions.length === 1) {
      buttons.push(actionButton(`delete:${name}:${version}`, "Delete", `Delete ${label}`, "danger",
        () => deleteVersion(name, version, service.versions.length === 1)));
    }
    return buttons;
  }

  function actionButton(key, text, ariaLabel, kind, onClick) {
    const busy = state.pending[key];
    return el("button", {type: "button", class: kind, dataset: {key}, "aria-label": ariaLabel,
      disabled: !!busy || Object.keys(state.pending).length > 0, "aria-busy": busy ? "true" : null,
      onclick: onClick, text: busy || text});
  }

  function promote(name, version) {
    return act(`promote:${name}:${version}`, "Promoting…",
      [`Promote ${name} ${version}?`,
        `${version} becomes the main version of ${name}: it is started if needed and takes the traffic once it ` +
        "answers its health check. Calls in flight to the current main version finish.", "Promote", false],
      () => api("POST", `api/services/${enc(name)}/promote`, {version}),
      `${name} ${version} is now the main version.`);
  }

  function versionAction(name, version, action) {
    const verb = action === "stop" ? "Stop" : "Start";
    const text = action === "stop"
      ? `${name} ${version} stops answering at its own URL (and at the service's URL if it is main).`
      : `${name} ${version} is started and answers at /services/${name}/versions/${version}/.`;
    return act(`${action}:${name}:${version}`, action === "stop" ? "Stopping…" : "Starting…",
      [`${verb} ${name} ${version}?`, text, verb, action === "stop"],
      () => api("POST", `api/services/${enc(name)}/versions/${enc(version)}/${action}`),
      `${name} ${version} is ${action === "stop" ? "stopped" : "started"}.`);
  }

  function deleteVersion(name, version, last) {
    const text = last
      ? `${version} is the only version, so the whole service ${name} is removed, with its invoke tokens.`
      : `${name} ${version} is stopped and removed with its image. This cannot be undone.`;
    return act(`delete:${name}:${version}`, "Deleting…", [`Delete ${name} ${version}?`, text, "Delete", true],
      () => api("DELETE", `api/services/${enc(name)}/versions/${enc(version)}`),
      `${name} ${version} is deleted.`);
  }

  function deleteService(name) {
    return act(`delete-service:${name}`, "Deleting…",
      [`Delete service ${name}?`,
        `Every version of ${name} is stopped and removed, and its invoke tokens are revoked. This cannot be undone.`,
        "Delete service", true],
      () => api("DELETE", `api/services/${enc(name)}`),
      `Service ${name} is deleted.`);
  }

  function renderEvents() {
    redraw("events", $("events"), state.events, () => {
      if (!state.events.length) return [el("li", {class: "muted", text: "Nothing has happened yet."})];
      return state.events.map((e) => el("li", {class: "event"},
        el("div", {class: "event-head"},
          el("span", {}, badge(e.kind, "event"), e.service ? el("strong", {class: "event-service", text: e.service}) : null),
          timeAgo(e.time)),
        el("div", {class: "event-message", text: e.message})));
    });
  }

  // ---------------------------------------------------------------- logs

  function stopLog() {
    if (state.log) state.log.controller.abort();
    state.log = null;
  }

  function setLogStatus(text, kind) {
    const status = $("log-status");
    status.textContent = text;
    status.dataset.state = kind || "";
    show($("log-reconnect"), kind === "ended" || kind === "error");
  }

  function appendLog(text) {
    const output = $("log-output");
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
    output.append(text);
    if (output.textContent.length > MAX_LOG_CHARS) {
      // Keep the newest half: a log followed for hours must not eat the tab's memory.
      output.textContent = output.textContent.slice(-MAX_LOG_CHARS / 2);
    }
    if ($("log-autoscroll").checked && atBottom) output.scrollTop = output.scrollHeight;
  }

  function openLogs(name, version) {
    if (!name) {
      location.hash = "#services";
      return;
    }
    if (state.log && state.log.name === name && state.log.version === version) return;
    stopLog();
    $("logs-heading").textContent = `Logs of ${name}`;
    $("log-output").textContent = "";
    followLog(name, version);
    fillLogVersions(name, version);
  }

  async function fillLogVersions(name, version) {
    const select = $("log-version");
    select.replaceChildren(el("option", {value: "", text: "main"}));
    select.value = version;
    try {
      const service = await api("GET", `api/services/${enc(name)}`);
      for (const v of [...service.versions].reverse()) {
        const main = v.version === service.main_version ? " (main)" : "";
        select.append(el("option", {value: v.version, text: `${v.version}${main}`}));
      }
      select.value = version;
    } catch (error) {
      report(error);
    }
  }

  /** Stream the log tail then new lines with fetch + ReadableStream, until the view is left. */
  async function followLog(name, version) {
    const controller = new AbortController();
    state.log = {name, version, controller};
    const params = new URLSearchParams({follow: "1", tail: "200"});
    if (version) params.set("version", version);
    setLogStatus("Connecting…", "connecting");
    try {
      const resp = await api("GET", `api/services/${enc(name)}/logs?${params}`, undefined,
        {signal: controller.signal, raw: true});
      setLogStatus("Following live", "live");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        appendLog(value);
      }
      setLogStatus("The stream ended: the version stopped or was removed.", "ended");
    } catch (error) {
      if (controller.signal.aborted || error.reason === "session-ended") return;
      setLogStatus(`Not following: ${error.message}`, "error");
    }
  }

  function reconnectLog() {
    if (!state.log) return;
    const {name, version} = state.log;
    state.log = null;
    $("log-output").textContent = "";
    followLog(name, version);
  }

  function chooseLogVersion() {
    const {args} = currentRoute();
    const version = $("log-version").value;
    location.hash = `#logs/${enc(args[0])}${version ? `/${enc(version)}` : ""}`;
  }

  // ---------------------------------------------------------------- tokens

  async function refreshTokens() {
    const [tokens, services] = await Promise.all([api("GET", "api/tokens"), api("GET", "api/services")]);
    state.tokens = tokens.tokens;
    fillServiceChoices(services.services.map((s) => s.name));
    renderTokens();
  }

  function fillServiceChoices(names) {
    const select = $("token-service");
    const wanted = names || state.services.map((s) => s.name);
    const current = [...select.options].map((o) => o.value);
    if (JSON.stringify(current) === JSON.stringify(wanted)) return;
    const chosen = select.value;
    select.replaceChildren(...wanted.map((n) => el("option", {value: n, text: n})));
    if (wanted.includes(chosen)) select.value = chosen;
    if (!wanted.length) select.append(el("option", {value: "", text: "no services yet"}));
  }

  function tokenState(token) {
    if (token.revoked) return "revoked";
    return token.active ? "active" : "expired";
  }

  function renderTokens() {
    const showInactive = $("tokens-show-inactive").checked;
    const shown = state.tokens.filter((t) => showInactive || t.active).slice().reverse();
    const data = {shown, me: state.session.token_id};
    redraw("tokens", $("tokens-table").tBodies[0], data, () => {
      if (!shown.length) return [el("tr", {}, el("td", {colspan: "9", class: "muted", text: "No tokens."}))];
      return shown.map(tokenRow);
    });
  }

  function tokenRow(token) {
    const mine = token.id === state.session.token_id;
    return el("tr", {dataset: {tokenId: token.id}, class: token.active ? "" : "inactive"},
      el("td", {}, el("code", {text: token.id}), mine ? badge("this session", "main") : null),
      el("td", {text: token.username}),
      el("td", {}, badge(token.scope, "scope")),
      el("td", {text: token.service || "-"}),
      el("td", {text: token.note || ""}),
      el("td", {}, timeAgo(token.created)),
      el("td", {text: token.expires_at ? localTime(token.expires_at) : "never"}),
      el("td", {}, badge(tokenState(token))),
      el("td", {class: "actions"}, token.active
        ? el("button", {type: "button", class: "danger", dataset: {key: `revoke:${token.id}`},
          "aria-label": `Revoke token ${token.id}`, text: "Revoke", onclick: () => revokeToken(token)})
        : null));
  }

  async function createToken(event) {
    event.preventDefault();
    const message = $("token-form-message");
    message.textContent = "";
    const scope = $("token-scope").value;
    const body = {scope};
    if (scope === "invoke") {
      body.service = $("token-service").value;
      if (!body.service) {
        message.textContent = "Choose the service the token may call.";
        return;
      }
    }
    const days = $("token-days").value.trim();
    if (days) {
      const value = Number(days);
      if (!(value > 0)) {
        message.textContent = "Expiry must be a number of days above 0, or empty for a token that never expires.";
        return;
      }
      body.expires_in = Math.round(value * 86400);
    }
    const note = $("token-note").value.trim();
    if (note) body.note = note;
    const button = $("token-create");
    button.disabled = true;
    try {
      const created = await api("POST", "api/tokens", body);
      showSecret(created.token);
      $("token-note").value = "";
      await refreshTokens();
    } catch (error) {
      report(error, message);
    } finally {
      button.disabled = false;
    }
  }

  function showSecret(secret) {
    $("token-secret-value").value = secret;
    $("token-copy-status").textContent = "";
    show($("token-secret"), true);
    $("token-secret-value").select();
    $("token-copy").focus();
  }

  function hideSecret(refocus) {
    // Off the page as soon as the user is done: it must not linger for the next person at the screen.
    $("token-secret-value").value = "";
    show($("token-secret"), false);
    if (refocus !== false) $("token-create").focus();
  }

  async function copySecret() {
    const input = $("token-secret-value");
    const status = $("token-copy-status");
    try {
      await navigator.clipboard.writeText(input.value);
      status.textContent = "Copied to the clipboard.";
    } catch (_) {
      // The clipboard API needs a secure context (https or localhost); fall back to the selection.
      input.select();
      const copied = document.execCommand && document.execCommand("copy");
      status.textContent = copied ? "Copied to the clipboard." : "Select the token and copy it by hand (Ctrl+C).";
    }
  }

  async function revokeToken(token) {
    const mine = token.id === state.session.token_id;
    const what = token.scope === "invoke" ? `the invoke token ${token.id} of ${token.service}` : `the ${token.scope} token ${token.id}`;
    const text = mine
      ? "This is the token of this session: revoking it logs you out."
      : `Calls made with ${what} are refused from now on. This cannot be undone.`;
    if (!(await confirmAction(`Revoke ${token.id}?`, text, "Revoke", true))) return;
    try {
      await api("DELETE", `api/tokens/${enc(token.id)}`);
      if (mine) {
        endSession("You revoked this session's token and are logged out.");
        return;
      }
      notify(`Token ${token.id} is revoked.`);
      await refreshTokens();
    } catch (error) {
      report(error);
    }
  }

  function scopeChanged() {
    const invoke = $("token-scope").value === "invoke";
    $("token-service").disabled = !invoke;
  }

  // ---------------------------------------------------------------- users

  async function refreshUsers() {
    try {
      state.users = (await api("GET", "api/users")).users;
    } catch (error) {
      if (error.status === 404) {
        // A manager without user management: hide the tab instead of showing an error every few seconds.
        state.usersApi = false;
        show($("users-tab"), false);
        location.hash = "#services";
        return;
      }
      throw error;
    }
    renderUsers();
  }

  function renderUsers() {
    redraw("users", $("users-table").tBodies[0], state.users, () => state.users.map(userRow));
  }

  function userRow(user) {
    const me = user.username === state.session.username;
    return el("tr", {dataset: {username: user.username}},
      el("td", {}, user.username, me ? badge("you", "main") : null),
      el("td", {}, badge(user.role, "scope")),
      el("td", {}, timeAgo(user.created)),
      el("td", {class: "actions"}, me ? null : el("button", {type: "button", class: "danger",
        dataset: {key: `delete-user:${user.username}`}, "aria-label": `Delete user ${user.username}`,
        text: "Delete", onclick: () => deleteUser(user.username)})));
  }

  async function createUser(event) {
    event.preventDefault();
    const message = $("user-form-message");
    message.textContent = "";
    const body = {username: $("user-name").value.trim(), password: $("user-password").value, role: $("user-role").value};
    if (!body.username || !body.password) {
      message.textContent = "Enter a username and a password.";
      return;
    }
    const button = $("user-create");
    button.disabled = true;
    try {
      await api("POST", "api/users", body);
      $("user-name").value = "";
      $("user-password").value = "";
      notify(`User ${body.username} is created.`);
      await refreshUsers();
    } catch (error) {
      report(error, message);
    } finally {
      button.disabled = false;
    }
  }

  async function deleteUser(username) {
    const text = `${username} can no longer log in, and every token they hold (invoke tokens they handed out too) ` +
      "is revoked at once. This cannot be undone.";
    if (!(await confirmAction(`Delete user ${username}?`, text, "Delete user", true))) return;
    try {
      await api("DELETE", `api/users/${enc(username)}`);
      notify(`User ${username} is deleted.`);
      await refreshUsers();
    } catch (error) {
      report(error);
    }
  }

  // ---------------------------------------------------------------- start

  async function showManagerInfo() {
    try {
      const health = await api("GET", "api/health");
      $("manager-info").textContent = `${health.version} · ${health.runtime} runtime`;
    } catch (_) {
      // Purely informative; the first real call reports an unreachable manager.
    }
  }

  async function resume() {
    const session = loadSession();
    if (!session) {
      showLogin("");
      return;
    }
    state.session = session;
    try {
      // Checks the kept token still works (a 401 here lands on the login page with a message).
      const who = await api("GET", "api/whoami");
      saveSession({...session, role: who.role, scope: who.scope});
      startApp();
    } catch (error) {
      if (error.reason !== "session-ended") {
        showLogin("");
        report(error, $("login-message"));
      }
    }
  }

  function wire() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("error-close").addEventListener("click", clearError);
    $("token-form").addEventListener("submit", createToken);
    $("token-scope").addEventListener("change", scopeChanged);
    $("token-copy").addEventListener("click", copySecret);
    $("token-secret-done").addEventListener("click", () => hideSecret(true));
    $("tokens-show-inactive").addEventListener("change", renderTokens);
    $("user-form").addEventListener("submit", createUser);
    $("log-version").addEventListener("change", chooseLogVersion);
    $("log-reconnect").addEventListener("click", reconnectLog);
    $("log-clear").addEventListener("click", () => { $("log-output").textContent = ""; });
    window.addEventListener("hashchange", route);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.session && state.view) startRefresh(state.view);
    });
  }

  wire();
  scopeChanged();
  showManagerInfo();
  resume();
})();
