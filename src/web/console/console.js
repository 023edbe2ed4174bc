// The agent console: sign-in, find a visitor, live presence, confirmation,
// invokes, and for administrators the online list and the token audit.
// Every value that comes from a visitor or the server is rendered with
// textContent, never as HTML.
(function () {
  "use strict";

  const SESSION_FLAG = "presence-console-session";
  const GROUP_KEY = "presence-console-group";
  const SSO_TRIED = "presence-console-sso-tried";

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  // A customer SSO token leaves the address bar (and history) at once.
  const ssoJwt = params.get("jwt");
  if (ssoJwt !== null) {
    params.delete("jwt");
    const query = params.toString();
    history.replaceState(history.state, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }

  const route = location.pathname.replace(/\/+$/, "") || "/console";
  const idpid = params.get("idpid");
  const sameWindow = params.get("viewersamewindow") === "1";
  /** The identity shown to the visitor in confirmation prompts. */
  const agentCard = {};
  for (const field of ["name", "email", "phone"]) {
    const value = params.get(field);
    if (value) agentCard[field] = value.slice(0, 256);
  }

  const groupParam = params.get("groupid") || idpid || localStorage.getItem(GROUP_KEY) || "";
  let groupid = /^\d+$/.test(groupParam) ? Number(groupParam) : null;
  let agent = null;
  let current = null; // the visitor id shown
  let stopWatching = null;
  let pendingConfirmation = null;
  // The auth service's origin when it is not this server's (a presence node
  // of a split deployment names it in /console/config.json); "" otherwise.
  let authBase = "";
  const authUrl = (path) => authBase + path;
  const authCredentials = () => (authBase ? "include" : "same-origin");
  const authorize = (request) => Authorization.authorize({ ...request, server: authBase || undefined });

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function setText(id, text) {
    $(id).textContent = text == null ? "" : String(text);
  }

  function describe(error) {
    if (error && error.code && error.message && error.message !== error.code) {
      return `${error.message} (${error.code})`;
    }
    return (error && (error.message || error.code)) || String(error);
  }

  /** A REST call with the group's token. */
  async function api(path, options = {}) {
    const token = await Authorization.renew(groupid);
    const auth = /^\/(auth|admin)\//.test(path);
    const response = await fetch(auth ? authUrl(path) : path, {
      method: options.method || "GET",
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      credentials: auth ? authCredentials() : "same-origin",
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
    if (response.status === 204) return null;
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new PresenceError(body.error || `http_${response.status}`, body.message, response.status);
    return body;
  }

  // ---- sign-in -----------------------------------------------------------

  /** Renews a token through the website session cookie, if we have one. */
  Authorization.onexpired = async (group) => {
    if (localStorage.getItem(SESSION_FLAG) !== "1") return null;
    try {
      await authorize({ groupid: group, credentials: {} });
    } catch (error) {
      if (error.status === 401) localStorage.removeItem(SESSION_FLAG);
      return null;
    }
    return Authorization.getToken(group);
  };

  function showSignIn(message) {
    show("console", false);
    show("join", false);
    show("sign-out", false);
    show("sign-in", true);
    setText("who", "");
    setText("sign-in-error", message || "");
    if (groupid) $("sign-in-group").value = String(groupid);
    show("sign-in-sso", Boolean(idpid));
    $(groupid ? "sign-in-username" : "sign-in-group").focus();
  }

  function startSso() {
    const back = location.pathname + location.search;
    location.assign(authUrl(`/auth/sso/${encodeURIComponent(idpid)}?return_to=${encodeURIComponent(back)}`));
  }

  $("sign-in-sso").addEventListener("click", startSso);

  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const group = Number($("sign-in-group").value);
    const username = $("sign-in-username").value.trim();
    const password = $("sign-in-password").value;
    // The password is used once, for the website session, and forgotten.
    $("sign-in-password").value = "";
    setText("sign-in-error", "");
    $("sign-in-submit").disabled = true;
    try {
      const login = await fetch(authUrl("/auth/login"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        credentials: authCredentials(),
        body: JSON.stringify({ groupid: group, username, password }),
      });
      if (!login.ok) {
        const body = await login.json().catch(() => ({}));
        throw new PresenceError(body.error || `http_${login.status}`, body.message, login.status);
      }
      localStorage.setItem(SESSION_FLAG, "1");
      groupid = group;
      await authorize({ groupid, credentials: {} });
      start();
    } catch (error) {
      setText("sign-in-error", describe(error));
    } finally {
      $("sign-in-submit").disabled = false;
    }
  });

  $("sign-out").addEventListener("click", async () => {
    const token = groupid && Authorization.getToken(groupid);
    const claims = token && PresenceAgent.decodeClaims(token);
    try {
      if (claims && claims.jti) await api("/auth/revoke", { method: "POST", body: { jti: claims.jti } });
    } catch {
      // The token may already be gone; signing out goes on.
    }
    await fetch(authUrl("/auth/logout"), { method: "POST", credentials: authCredentials() }).catch(() => null);
    localStorage.removeItem(SESSION_FLAG);
    if (groupid) Authorization.clear(groupid);
    if (agent) agent.close();
    agent = null;
    showSignIn("Signed out.");
  });

  // ---- the console -------------------------------------------------------

  function start() {
    const info = Authorization.tokenInfo(groupid);
    if (!info) return showSignIn();
    localStorage.setItem(GROUP_KEY, String(groupid));
    sessionStorage.removeItem(SSO_TRIED);
    show("sign-in", false);
    show("sign-out", true);
    setText("who", `${info.username} · group ${info.groupid} · ${info.role}`);
    if (!agent) {
      agent = new PresenceAgent({ groupid });
      agent.onready = (session) => {
        setText("link", "connected");
        const list = $("invoke-functions");
        list.replaceChildren(
          ...(session.functions || []).map((name) => {
            const option = document.createElement("option");
            option.value = name;
            return option;
          }),
        );
      };
      agent.onclose = () => setText("link", "reconnecting…");
      agent.onerror = (error) => {
        if (error.code === "token_expired" && !Authorization.getToken(groupid)) {
          showSignIn("Your sign-in has expired. Sign in again to continue.");
        }
      };
      agent.onconfirmation = confirmationSettled;
    }
    agent.connect();

    if (route === "/console/join") {
      show("join", true);
      $("join-key").focus();
      return;
    }
    show("console", true);
    if (info.role === "administrator") {
      show("admin", true);
      $("console").classList.add("with-admin");
      loadOnline();
      loadAudit();
    }
    if (route === "/console/view") {
      const visitorid = params.get("visitorid");
      const key = params.get("sessionkey");
      if (visitorid) openVisitor(visitorid, "find-error");
      else if (key) findByKey(key, "find-error").then((id) => id && openVisitor(id, "find-error"));
    }
  }

  /** The visitor id holding a session key, or null with the error shown. */
  async function findByKey(key, errorId) {
    setText(errorId, "");
    try {
      const doc = await agent.findSession(key);
      return doc.visitorid;
    } catch (error) {
      setText(errorId, describe(error));
      return null;
    }
  }

  $("find-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("find-input").value.trim();
    if (/^\d{6}$/.test(query)) {
      const id = await findByKey(query, "find-error");
      if (id) openVisitor(id, "find-error");
    } else {
      openVisitor(query, "find-error");
    }
  });

  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const visitorid = await findByKey($("join-key").value.trim(), "join-error");
    if (!visitorid) return;
    const target = new URLSearchParams({ groupid: String(groupid), visitorid });
    for (const [field, value] of Object.entries(agentCard)) target.set(field, value);
    if (sameWindow) {
      target.set("viewersamewindow", "1");
      location.assign(`/console/view?${target}`);
      return;
    }
    const url = `/console/view?${target}`;
    const opened = window.open(url, "_blank");
    if (opened) opened.opener = null;
    else location.assign(url);
  });

  /** Shows a visitor and watches it live. */
  async function openVisitor(visitorid, errorId) {
    setText(errorId, "");
    let doc;
    try {
      doc = await agent.lookup(visitorid);
    } catch (error) {
      setText(errorId, describe(error));
      return;
    }
    if (stopWatching) stopWatching();
    current = doc.visitorid;
    pendingConfirmation = null;
    setText("visitor-id", current);
    setText("confirm-answer", "");
    setText("confirm-status", "");
    setText("invoke-error", "");
    $("invoke-results").replaceChildren();
    show("visitor", true);
    render(doc);
    const watched = current;
    stopWatching = agent.watch(current, {
      onstate: (visitor) => watched === current && render(visitor),
    });
  }

  function render(visitor) {
    const status = $("visitor-status");
    const navigating = visitor.online && visitor.connections === 0;
    status.className = `pill ${navigating ? "navigating" : visitor.online ? "online" : "offline"}`;
    status.textContent = navigating ? "online (changing page)" : visitor.online ? "online" : "offline";
    const data = visitor.data || {};
    setText("visitor-page-title", data.title || (visitor.online ? "(no title)" : "—"));
    setText("visitor-page-url", data.url || "");
    setText("visitor-tabs", String(visitor.connections || 0));
    setText(
      "visitor-identity",
      visitor.verified ? `verified ${JSON.stringify(visitor.identity || {})}` : "not verified",
    );
    setText("visitor-confirmed", visitor.confirmed ? "yes, by you" : "no");
    show("confirm-end", Boolean(visitor.confirmed) || Boolean(pendingConfirmation));
    const rows = Object.entries(data).map(([key, value]) => {
      const row = document.createElement("tr");
      const name = document.createElement("th");
      name.textContent = key;
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(name, cell);
      return row;
    });
    $("visitor-data").replaceChildren(...rows);
  }

  // ---- confirmation ------------------------------------------------------

  $("confirm-start").addEventListener("click", async () => {
    if (!current) return;
    setText("confirm-status", "");
    setText("confirm-answer", "");
    try {
      const started = await agent.confirm(current, Object.keys(agentCard).length ? { agent: agentCard } : {});
      pendingConfirmation = started.confirmation;
      const answer = $("confirm-answer");
      answer.replaceChildren("Ask the visitor to press ", Object.assign(document.createElement("strong"), {
        textContent: started.answer,
      }));
      setText("confirm-status", "Waiting for the visitor…");
      show("confirm-end", true);
    } catch (error) {
      setText("confirm-status", describe(error));
    }
  });

  $("confirm-end").addEventListener("click", async () => {
    if (!current) return;
    try {
      await api(`/presence/${groupid}/visitors/${encodeURIComponent(current)}/confirm`, { method: "DELETE" });
      pendingConfirmation = null;
      setText("confirm-answer", "");
      setText("confirm-status", "Confirmation ended.");
      render(await agent.lookup(current));
    } catch (error) {
      setText("confirm-status", describe(error));
    }
  });

  const OUTCOMES = {
    confirmed: "Confirmed: this is the visitor you are talking to.",
    rejected: "The visitor pressed the wrong number.",
    declined: "The visitor declined.",
    expired: "The prompt expired.",
  };

  async function confirmationSettled(event) {
    if (event.visitorid !== current || event.id !== pendingConfirmation) return;
    pendingConfirmation = null;
    setText("confirm-answer", "");
    setText("confirm-status", OUTCOMES[event.status] || event.status);
    try {
      render(await agent.lookup(current));
    } catch {
      // The watch keeps the view current.
    }
  }

  // ---- invoke ------------------------------------------------------------

  $("invoke-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    setText("invoke-error", "");
    const func = $("invoke-func").value.trim();
    let args;
    try {
      const text = $("invoke-args").value.trim();
      args = text ? JSON.parse(text) : null;
    } catch (error) {
      setText("invoke-error", `The arguments are not valid JSON: ${error.message}`);
      return;
    }
    const timeoutText = $("invoke-timeout").value.trim();
    const options = timeoutText ? { timeoutMs: Number(timeoutText) } : {};
    const item = document.createElement("li");
    item.textContent = `${func}: waiting…`;
    $("invoke-results").prepend(item);
    try {
      const result = await agent.invoke(current, func, args, options);
      item.textContent = result.ok
        ? `${func} → ${JSON.stringify(result.value)}`
        : `${func} failed in the page: ${result.error}`;
      if (!result.ok) item.className = "failed";
    } catch (error) {
      item.textContent = `${func}: ${describe(error)}`;
      item.className = "failed";
    }
  });

  // ---- administrators ----------------------------------------------------

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  async function loadOnline() {
    setText("online-error", "");
    try {
      const page = await api(`/presence/${groupid}/visitors?limit=100`);
      $("online-list").replaceChildren(
        ...page.visitors.map((visitor) => {
          const row = document.createElement("tr");
          const open = document.createElement("button");
          open.type = "button";
          open.textContent = "Open";
          open.setAttribute("aria-label", `Open visitor ${visitor.visitorid}`);
          open.addEventListener("click", () => openVisitor(visitor.visitorid, "online-error"));
          const action = document.createElement("td");
          action.appendChild(open);
          const data = visitor.data || {};
          row.append(cell(visitor.visitorid), cell(data.title || data.url || ""), cell(visitor.connections), action);
          return row;
        }),
      );
    } catch (error) {
      setText("online-error", describe(error));
    }
  }

  async function loadAudit() {
    setText("audit-error", "");
    try {
      const page = await api(`/admin/${groupid}/audit?limit=50`);
      $("audit-list").replaceChildren(
        ...page.records.map((record) => {
          const row = document.createElement("tr");
          const when = new Date(record.at).toISOString().replace("T", " ").slice(0, 19);
          row.append(
            cell(when),
            cell(record.outcome),
            cell(record.username),
            cell(record.credential),
            cell(record.remote),
          );
          return row;
        }),
      );
    } catch (error) {
      setText("audit-error", describe(error));
    }
  }

  $("online-refresh").addEventListener("click", loadOnline);
  $("audit-refresh").addEventListener("click", loadAudit);

  // ---- start -------------------------------------------------------------

  async function boot() {
    try {
      const config = await (await fetch("/console/config.json")).json();
      if (typeof config.auth_url === "string") authBase = config.auth_url.replace(/\/+$/, "");
    } catch {
      // An older server: sign in on this origin.
    }
    if (ssoJwt && !groupid) {
      return showSignIn("Single sign-on links need idpid=<group id>.");
    }
    if (ssoJwt) {
      try {
        await authorize({ groupid, credentials: { jwt: ssoJwt } });
      } catch (error) {
        return showSignIn(`Single sign-on failed: ${describe(error)}`);
      }
    }
    if (groupid && (await Authorization.renew(groupid))) return start();
    if (idpid && !ssoJwt && sessionStorage.getItem(SSO_TRIED) !== idpid) {
      sessionStorage.setItem(SSO_TRIED, idpid);
      return startSso();
    }
    showSignIn();
  }

  boot();
})();
