/*! presence-server visitor SDK. Plain modern JavaScript, no dependencies.
 *
 * Script tag:
 *   <script src="https://presence.example.com/sdk/presence-visitor.js"
 *           data-groupid="72" data-visitorid="v-123" data-presence="on"></script>
 * API:
 *   const v = new PresenceVisitor({server, groupid, visitorid, identity});
 *   v.register("showTerms", async (args) => ...);
 *   v.connect();
 * Receipts: each invoke is acknowledged (`received`) before it runs, and
 * `pagehide` sends `leaving`; the server re-sends only what did not run.
 */
(function (global) {
  "use strict";

  /** Reconnect backoff bounds (ms). */
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 20000;

  /**
   * Jittered backoff: a uniform delay in [min, ceiling], where the ceiling
   * is min(max, min * 2^attempt, offline). The wait is never longer than
   * the time already spent offline, so a visitor is back within about twice
   * the outage: after a server restart every refused attempt would
   * otherwise double the window, and the last visitors came back seconds
   * after the server did. Uniform over the whole window (not clamped up to
   * the floor), so clients that lost the same server do not retry in step.
   * @param {number} attempt reconnects tried so far (0 for the first)
   * @param {number} [offlineMs] time since the connection was lost (no
   *   bound if not a finite number)
   * @param {() => number} [random] a uniform source in [0, 1)
   * @returns {number} milliseconds to wait
   */
  function backoffDelay(attempt, offlineMs, random = Math.random) {
    const offline = Number.isFinite(offlineMs) ? offlineMs : BACKOFF_MAX_MS;
    const ceiling = Math.min(
      BACKOFF_MAX_MS,
      BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16),
      Math.max(BACKOFF_MIN_MS, offline),
    );
    return BACKOFF_MIN_MS + Math.floor(random() * (ceiling - BACKOFF_MIN_MS));
  }

  /** A clock that does not jump with the wall clock (ms). */
  const monotonicNow = () =>
    typeof performance !== "undefined" ? performance.now() : Date.now();

  /**
   * Presence data values must be strings or numbers; everything else is
   * dropped here rather than refused by the server.
   * @param {Record<string, unknown>} data
   * @returns {Record<string, string|number>}
   */
  function cleanData(data) {
    /** @type {Record<string, string|number>} */
    const out = {};
    for (const [key, value] of Object.entries(data || {})) {
      if (typeof value === "string" || (typeof value === "number" && Number.isFinite(value))) {
        out[key] = value;
      }
    }
    return out;
  }

  /**
   * The WebSocket URL of a server base URL. The group rides along so that
   * a group at its `max_visitors` refuses the upgrade (429) before it is made.
   * @param {string} server e.g. "https://presence.example.com"
   * @param {number} groupid
   */
  function socketUrl(server, groupid) {
    const url = new URL("/visitor/ws", server);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("groupid", String(groupid));
    return url.toString();
  }

  /** Most tickets kept (and presented in a hello) per group and visitor. */
  const MAX_TICKETS = 16;

  /** @param {number} groupid @param {string} visitorid */
  function ticketKey(groupid, visitorid) {
    return `presence-tickets:${groupid}:${visitorid}`;
  }

  /**
   * The confirmation tickets this tab holds. Tickets live in sessionStorage,
   * per tab, so a grant follows this tab's navigations and reconnects only.
   * @returns {string[]}
   */
  function loadTickets(groupid, visitorid) {
    try {
      const stored = JSON.parse(globalThis.sessionStorage.getItem(ticketKey(groupid, visitorid)) || "[]");
      return Array.isArray(stored) ? stored.filter((t) => typeof t === "string").slice(-MAX_TICKETS) : [];
    } catch {
      return [];
    }
  }

  /** Keeps a new ticket, newest last, dropping the oldest beyond the cap. */
  function saveTicket(groupid, visitorid, ticket) {
    if (typeof ticket !== "string") return;
    const tickets = loadTickets(groupid, visitorid).filter((t) => t !== ticket);
    tickets.push(ticket);
    try {
      globalThis.sessionStorage.setItem(ticketKey(groupid, visitorid), JSON.stringify(tickets.slice(-MAX_TICKETS)));
    } catch {
      // Storage full or disabled: the grant lasts as long as this socket.
    }
  }

  /** A new `tag` element of `doc` with these attributes and, if given, text. */
  function element(doc, tag, attributes = {}, text) {
    const node = doc.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const DIALOG_CSS = `
    :host { all: initial; }
    .backdrop { position: fixed; inset: 0; background: rgba(0,0,0,.45); display: flex;
      align-items: center; justify-content: center; z-index: 2147483647;
      font: 16px/1.4 system-ui, sans-serif; }
    .dialog { background: #fff; color: #111; border-radius: 10px; padding: 20px 22px;
      max-width: min(92vw, 420px); box-shadow: 0 10px 40px rgba(0,0,0,.3); }
    h2 { font-size: 18px; margin: 0 0 8px; }  p { margin: 0 0 14px; }
    .choices { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 12px; }
    button { font: inherit; border-radius: 8px; border: 1px solid #888; background: #f4f4f4;
      color: #111; padding: 10px 16px; cursor: pointer; min-width: 64px; }
    button.choice { font-size: 22px; font-weight: 600; }
    button:focus-visible { outline: 3px solid #1a5fd0; outline-offset: 2px; }
    button.decline { background: transparent; border-color: transparent; text-decoration: underline; }
    .badge { position: fixed; right: 12px; bottom: 12px; background: #111; color: #fff;
      border-radius: 8px; padding: 8px 12px; font: 600 16px/1 ui-monospace, monospace;
      z-index: 2147483646; letter-spacing: .08em; }`;

  class PresenceVisitor {
    /**
     * @param {{server?: string, groupid: number, visitorid: string,
     *          identity?: string, presence?: boolean, badge?: boolean}} options
     */
    constructor(options) {
      if (!options || !Number.isInteger(Number(options.groupid)) || !options.visitorid) {
        throw new TypeError("PresenceVisitor needs groupid and visitorid");
      }
      this.server = options.server || (global.location && global.location.origin);
      this.groupid = Number(options.groupid);
      this.visitorid = String(options.visitorid);
      this.identity = options.identity;
      this.sendPageData = options.presence !== false;
      this.showBadge = options.badge === true;
      /** @type {Map<string, (args: unknown) => unknown>} */
      this.functions = new Map();
      /** @type {Record<string, string|number>} */
      this.data = {};
      /** @type {(() => void) | null} called on each (re)connection */
      this.onready = null;
      /** @type {((data: unknown) => void) | null} */
      this.onsignal = null;
      /** @type {((error: {code: string, message: string}) => void) | null} */
      this.onerror = null;
      /** @type {((event: {code: number, reason: string}) => void) | null} */
      this.onclose = null;
      this.ws = null;
      this.attempt = 0;
      /** When the last welcomed connection was lost (`monotonicNow`). */
      this.offlineSince = null;
      this.stopped = true;
      this.timer = null;
      /** @type {Map<string, {resolve: Function, reject: Function}>} */
      this.waiting = new Map();
      this.dialogs = new Map();
      this.welcomed = false;
    }

    /** Opens the socket (and keeps it open until `close()`). */
    connect() {
      this.stopped = false;
      if (this.sendPageData) this.watchNavigation();
      this.watchLifecycle();
      this.open();
      return this;
    }

    /** Closes the socket for good. */
    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close(1000, "closed by the page");
    }

    /**
     * Makes `fn` invokable by agents. Only registered functions run.
     * @param {string} name
     * @param {(args: unknown) => unknown} fn
     */
    register(name, fn) {
      if (typeof fn !== "function") throw new TypeError("register needs a function");
      this.functions.set(String(name), fn);
      return this;
    }

    /**
     * Merges `data` into the visitor's presence data.
     * @param {Record<string, string|number>} data
     */
    presence(data) {
      Object.assign(this.data, cleanData(data));
      this.send({ type: "presence", data: cleanData(data) });
    }

    /**
     * Asks the server for a 6-digit session key to read to an agent.
     * @returns {Promise<string>}
     */
    requestSessionKey() {
      return new Promise((resolve, reject) => {
        if (!this.welcomed) return reject(new Error("not connected"));
        this.waiting.set("session_key", { resolve, reject });
        this.send({ type: "session_key" });
      }).then((key) => {
        if (this.showBadge) this.badge(key);
        return key;
      });
    }

    /** @private */
    open() {
      const ws = new WebSocket(socketUrl(this.server, this.groupid));
      this.ws = ws;
      this.welcomed = false;
      ws.onopen = () => {
        const data = this.sendPageData ? { ...this.pageData(), ...this.data } : { ...this.data };
        const hello = { type: "hello", groupid: this.groupid, visitorid: this.visitorid, data, receipts: true };
        if (this.identity) hello.identity = this.identity;
        const tickets = loadTickets(this.groupid, this.visitorid);
        if (tickets.length) hello.tickets = tickets;
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => {
        this.welcomed = false;
        for (const [, waiter] of this.waiting) waiter.reject(new Error("connection closed"));
        this.waiting.clear();
        if (this.onclose) this.onclose({ code: event.code, reason: event.reason });
        // 1008 means the server refused us (bad hello, identity): do not hammer it.
        if (!this.stopped && event.code !== 1008) {
          if (this.offlineSince === null) this.offlineSince = monotonicNow();
          const delay = backoffDelay(this.attempt++, monotonicNow() - this.offlineSince);
          this.timer = setTimeout(() => this.open(), delay);
        }
      };
    }

    /** @private */
    send(frame) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
    }

    /** @private */
    receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      switch (frame.type) {
        case "welcome":
          this.welcomed = true;
          this.attempt = 0;
          this.offlineSince = null;
          if (this.onready) this.onready();
          break;
        case "invoke":
          this.invoke(frame);
          break;
        case "signal":
          if (this.onsignal) this.onsignal(frame.data);
          break;
        case "session_key":
          this.settle("session_key", (waiter) => waiter.resolve(frame.key));
          break;
        case "confirm":
          this.showConfirm(frame);
          break;
        case "confirm_ticket":
          saveTicket(this.groupid, this.visitorid, frame.ticket);
          break;
        case "confirm_closed":
          this.closeConfirm(frame.id);
          break;
        case "error":
          // A session_key request refused: no free code, or the group's
          // minting budget is spent for now.
          if (frame.code === "session_keys_exhausted" || frame.code === "rate_limited") {
            this.settle("session_key", (waiter) => waiter.reject(new Error(frame.message)));
          }
          if (this.onerror) this.onerror({ code: frame.code, message: frame.message });
          break;
      }
    }

    /** @private Hands the request waiting for `kind` (if any) to `fn`. */
    settle(kind, fn) {
      const waiter = this.waiting.get(kind);
      this.waiting.delete(kind);
      if (waiter) fn(waiter);
    }

    /** @private Runs a registered function and answers with its result. */
    async invoke(frame) {
      // Taken: from here on the server must not send it again.
      this.send({ type: "received", id: frame.id });
      const fn = this.functions.get(frame.func);
      const fail = (error) => this.send({ type: "result", id: frame.id, ok: false, error });
      if (!fn) return fail(`function ${frame.func} is not registered`);
      try {
        const value = await fn(frame.args);
        this.send({ type: "result", id: frame.id, ok: true, value: value === undefined ? null : value });
      } catch (error) {
        fail(error && error.message ? error.message : String(error));
      }
    }

    /** @private The page's URL and title. */
    pageData() {
      const doc = global.document;
      return cleanData({
        url: global.location ? global.location.href.slice(0, 1024) : undefined,
        title: doc && doc.title ? doc.title.slice(0, 256) : undefined,
      });
    }

    /** @private Sends URL and title again on single-page-app navigation. */
    watchNavigation() {
      if (this.navigationWatched || !global.history) return;
      this.navigationWatched = true;
      const update = () => setTimeout(() => this.send({ type: "presence", data: this.pageData() }), 0);
      for (const method of ["pushState", "replaceState"]) {
        const original = global.history[method];
        global.history[method] = function (...args) {
          const result = original.apply(this, args);
          update();
          return result;
        };
      }
      global.addEventListener("popstate", update);
    }

    /** @private `pagehide` says `leaving`; a page back from the bfcache
     * reconnects, as its socket no longer gets commands. */
    watchLifecycle() {
      if (this.lifecycleWatched || typeof global.addEventListener !== "function") return;
      this.lifecycleWatched = true;
      global.addEventListener("pagehide", () => this.send({ type: "leaving" }));
      global.addEventListener("pageshow", (event) => {
        if (event.persisted && this.ws && !this.stopped) this.ws.close(1000, "page restored");
      });
    }

    /** @private A host element with its own shadow root. */
    shadowHost() {
      const host = global.document.createElement("presence-visitor-ui");
      const root = host.attachShadow({ mode: "open" });
      // A constructed sheet works under a strict style-src CSP; a <style>
      // element is the fallback for older browsers.
      if (global.CSSStyleSheet && "adoptedStyleSheets" in root) {
        const sheet = new global.CSSStyleSheet();
        sheet.replaceSync(DIALOG_CSS);
        root.adoptedStyleSheets = [sheet];
      } else {
        const style = global.document.createElement("style");
        style.textContent = DIALOG_CSS;
        root.appendChild(style);
      }
      global.document.body.appendChild(host);
      return { host, root };
    }

    /** @private The accessible confirmation dialog. */
    showConfirm(frame) {
      if (!global.document || this.dialogs.has(frame.id)) return;
      const { host, root } = this.shadowHost();
      const doc = global.document;
      const backdrop = element(doc, "div", { class: "backdrop" });
      const dialog = element(doc, "div", {
        class: "dialog", role: "dialog", "aria-modal": "true",
        "aria-labelledby": "presence-confirm-title", "aria-describedby": "presence-confirm-text",
      });
      const title = element(doc, "h2", { id: "presence-confirm-title" }, "Confirm it is you");
      const name = frame.agent && frame.agent.name ? frame.agent.name : "An agent";
      const text = element(doc, "p", { id: "presence-confirm-text" },
        `${name} is asking you to confirm. Press the number they read to you.`);
      const choices = element(doc, "div", { class: "choices", role: "group", "aria-label": "Choices" });
      const answer = (choice) => {
        this.send({ type: "confirm_answer", id: frame.id, choice });
        this.closeConfirm(frame.id);
      };
      for (const choice of frame.choices || []) {
        const button = element(doc, "button", { type: "button", class: "choice" }, String(choice));
        button.addEventListener("click", () => answer(String(choice)));
        choices.appendChild(button);
      }
      const decline = element(doc, "button", { type: "button", class: "decline" }, "Decline");
      decline.addEventListener("click", () => answer(null));
      dialog.append(title, text, choices, decline);
      backdrop.appendChild(dialog);
      root.appendChild(backdrop);
      const previous = doc.activeElement;
      // Focus trap: Tab cycles within the dialog; Escape declines.
      dialog.addEventListener("keydown", (event) => {
        const buttons = [...dialog.querySelectorAll("button")];
        if (event.key === "Escape") {
          event.preventDefault();
          answer(null);
        } else if (event.key === "Tab" && buttons.length) {
          const index = buttons.indexOf(root.activeElement);
          const next = event.shiftKey
            ? (index <= 0 ? buttons.length - 1 : index - 1)
            : (index + 1) % buttons.length;
          event.preventDefault();
          buttons[next].focus();
        }
      });
      const first = dialog.querySelector("button");
      if (first) first.focus();
      this.dialogs.set(frame.id, { host, previous });
    }

    /** @private */
    closeConfirm(id) {
      const open = this.dialogs.get(id);
      if (!open) return;
      this.dialogs.delete(id);
      open.host.remove();
      if (open.previous && typeof open.previous.focus === "function") open.previous.focus();
    }

    /** @private The session-key badge. */
    badge(key) {
      if (!global.document) return;
      if (!this.badgeHost) {
        const { host, root } = this.shadowHost();
        const badge = element(global.document, "div", { class: "badge", role: "status", "aria-live": "polite" });
        root.appendChild(badge);
        this.badgeHost = { host, badge };
      }
      this.badgeHost.badge.textContent = `Session key ${key}`;
    }
  }

  Object.assign(PresenceVisitor, { backoffDelay, cleanData, socketUrl, loadTickets, saveTicket });
  global.PresenceVisitor = PresenceVisitor;

  // Script-tag start: <script ... data-groupid data-visitorid data-presence>.
  const script = global.document && global.document.currentScript;
  if (script && script.dataset && script.dataset.groupid && script.dataset.visitorid) {
    global.presenceVisitor = new PresenceVisitor({
      server: new URL(script.src).origin,
      groupid: Number(script.dataset.groupid),
      visitorid: script.dataset.visitorid,
      identity: script.dataset.identity,
      presence: script.dataset.presence !== "off",
      badge: script.dataset.badge === "on",
    }).connect();
  }
})(typeof window !== "undefined" ? window : globalThis);
