/*! presence-server agent SDK. Plain modern JavaScript, no dependencies.
 *
 *   await Authorization.authorize({groupid: 72, credentials: {username, password}});
 *   const agent = new PresenceAgent({groupid: 72});
 *   agent.watch("v-123", {onconnected, ondisconnected, onpresence, onconfirmation});
 *   const result = await agent.invoke("v-123", "showTerms", {}, {timeoutMs: 5000});
 *
 * A token obtained server side can be handed over with
 * `Authorization.setToken(token)`, a `data-authtoken` attribute on this
 * script tag, or `<meta name="presence-authtoken" content="...">`.
 */
(function (global) {
  "use strict";

  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 20000;
  /** A stored token this close to expiry (s) is treated as expired. */
  const EXPIRY_MARGIN_S = 30;
  /** Client-side deadline of requests without their own timeout (ms). */
  const REQUEST_DEADLINE_MS = 15000;
  /** Slack over an invoke's own timeout before the client gives up (ms). */
  const INVOKE_SLACK_MS = 5000;
  /** Error codes that mean the token is no longer usable. */
  const TOKEN_ERRORS = new Set(["token_expired", "token_revoked", "unauthorized"]);

  /**
   * Jittered backoff: uniform in [min, min(max, min * 2^attempt, offline)]:
   * the wait is never longer than the time already spent offline (the
   * visitor script's rule).
   * @param {number} attempt
   * @param {number} [offlineMs] time since the connection was lost (no
   *   bound if not a finite number)
   * @param {() => number} [random]
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

  /** An error reported by the server (or the SDK), with its stable code. */
  class PresenceError extends Error {
    /**
     * @param {string} code e.g. "visitor_not_present"
     * @param {string} message
     * @param {number} [status] the HTTP status, for REST errors
     */
    constructor(code, message, status) {
      super(message || code);
      this.name = "PresenceError";
      this.code = code;
      this.status = status;
    }
  }

  /**
   * The claims of a JWT, unverified (the server verifies; the SDK only needs
   * the group and expiry), or null when it is not a JWT.
   * @param {string} token
   * @returns {Record<string, any> | null}
   */
  function decodeClaims(token) {
    const parts = typeof token === "string" ? token.split(".") : [];
    if (parts.length !== 3) return null;
    try {
      const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(global.atob(base64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === "object" ? claims : null;
    } catch {
      return null;
    }
  }

  /** localStorage when the page may use it, else a per-page map. */
  function tokenStorage() {
    try {
      const storage = global.localStorage;
      const probe = "presence-agent-probe";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    } catch {
      const memory = new Map();
      return {
        getItem: (k) => (memory.has(k) ? memory.get(k) : null),
        setItem: (k, v) => memory.set(k, String(v)),
        removeItem: (k) => memory.delete(k),
      };
    }
  }

  const currentScript = global.document && global.document.currentScript;
  const defaultServer =
    currentScript && currentScript.src
      ? new URL(currentScript.src).origin
      : global.location && global.location.origin;

  /**
   * Agent tokens: obtained, stored per group, reused until they expire.
   */
  const Authorization = {
    /** Base URL of the presence server. */
    server: defaultServer,
    /** Unix seconds now; replaceable in tests. */
    now: () => Date.now() / 1000,
    /**
     * Called when a group's token is missing or expired, with the group id.
     * Return a new token, or call `authorize`/`setToken` and return nothing;
     * return null (or throw) to give up. Watches survive the renewal.
     * @type {((groupid: number) => Promise<string | null | void>) | null}
     */
    onexpired: null,
    storage: tokenStorage(),

    /** @private */
    key(groupid) {
      return `presence-agent-token:${Number(groupid)}`;
    },

    /**
     * Exchanges credentials for a token at `POST /auth/token` and stores it.
     * `credentials: {}` uses the website session cookie.
     * @param {{groupid: number, credentials?: object, duration?: number, server?: string}} request
     * @returns {Promise<{token: string, expires: number, groupid: number, username: string, role: string}>}
     */
    async authorize({ groupid, credentials, duration, server }) {
      const body = { groupid: Number(groupid), credentials: credentials || {} };
      if (duration !== undefined) body.duration = duration;
      const url = new URL("/auth/token", server || this.server);
      // `{}` signs in with the website session cookie, which an auth
      // service on another origin only sees when the request includes it.
      const cookie = Object.keys(body.credentials).length === 0 && url.origin !== global.location?.origin;
      const response = await global.fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        credentials: cookie ? "include" : "same-origin",
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new PresenceError(answer.error || `http_${response.status}`, answer.message, response.status);
      }
      this.setToken(answer.token);
      return answer;
    },

    /**
     * Stores a token obtained elsewhere (for example by the site's backend).
     * @param {string} token
     * @returns {{token: string, groupid: number, username: string, role: string, expires: number}}
     */
    setToken(token) {
      const claims = decodeClaims(token);
      if (!claims || !Number.isInteger(claims.groupid) || !Number.isFinite(claims.exp)) {
        throw new TypeError("not a presence agent token");
      }
      const info = { token, groupid: claims.groupid, username: claims.sub, role: claims.role, expires: claims.exp };
      this.storage.setItem(this.key(claims.groupid), JSON.stringify(info));
      return info;
    },

    /**
     * The stored, unexpired token of a group, with what it says about itself.
     * @param {number} groupid
     */
    tokenInfo(groupid) {
      let info = null;
      try {
        info = JSON.parse(this.storage.getItem(this.key(groupid)) || "null");
      } catch {
        info = null;
      }
      if (!info || typeof info.token !== "string" || !(info.expires - EXPIRY_MARGIN_S > this.now())) {
        if (info) this.clear(groupid);
        return null;
      }
      return info;
    },

    /** The stored, unexpired token of a group, or null. */
    getToken(groupid) {
      const info = this.tokenInfo(groupid);
      return info ? info.token : null;
    },

    /** Forgets a group's token. */
    clear(groupid) {
      this.storage.removeItem(this.key(groupid));
    },

    /**
     * A usable token for the group: the stored one, or one from `onexpired`.
     * @param {number} groupid
     * @returns {Promise<string | null>}
     */
    async renew(groupid) {
      const stored = this.getToken(groupid);
      if (stored) return stored;
      if (!this.onexpired) return null;
      try {
        const token = await this.onexpired(Number(groupid));
        if (typeof token === "string" && token) this.setToken(token);
      } catch {
        return null;
      }
      return this.getToken(groupid);
    },
  };

  /** The agent-socket URL of a server base URL. */
  function socketUrl(server) {
    const url = new URL("/agent/ws", server);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  class PresenceAgent {
    /**
     * @param {{server?: string, groupid: number, token?: string}} options
     */
    constructor(options) {
      if (!options || !Number.isInteger(Number(options.groupid))) {
        throw new TypeError("PresenceAgent needs a groupid");
      }
      this.server = options.server || Authorization.server;
      this.groupid = Number(options.groupid);
      if (options.token) Authorization.setToken(options.token);
      /** @type {Map<string, Record<string, Function>>} */
      this.watches = new Map();
      /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
      this.pending = new Map();
      /** Frames waiting for the socket to be ready. */
      this.queue = [];
      this.nextId = 1;
      this.attempt = 0;
      /** When the last ready connection was lost (`monotonicNow`). */
      this.offlineSince = null;
      this.ready = false;
      this.stopped = true;
      this.ws = null;
      this.timer = null;
      /** The last `ready` frame: username, role, functions, expires. */
      this.session = null;
      /** @type {((session: object) => void) | null} each (re)connection */
      this.onready = null;
      /** @type {((error: PresenceError) => void) | null} */
      this.onerror = null;
      /** @type {((event: {code: number, reason: string}) => void) | null} */
      this.onclose = null;
      /** @type {((event: {visitorid: string, id: string, status: string}) => void) | null} */
      this.onconfirmation = null;
    }

    /** Opens the socket and keeps it open (reconnecting) until `close()`. */
    connect() {
      if (!this.stopped) return this;
      this.stopped = false;
      this.open();
      return this;
    }

    /** Closes the socket for good; pending requests fail. */
    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close(1000, "closed by the console");
      this.failPending("closed", "the agent closed the connection");
      this.queue = [];
    }

    /**
     * Watches a visitor: the callbacks get the visitor's state, at once and
     * on every change. Watches are renewed after each reconnect.
     * @param {string} visitorid
     * @param {{onstate?: Function, onconnected?: Function, ondisconnected?: Function,
     *          onpresence?: Function, onconfirmation?: Function}} callbacks
     * @returns {() => void} stops watching
     */
    watch(visitorid, callbacks = {}) {
      const id = String(visitorid);
      this.watches.set(id, callbacks);
      if (this.ready) this.send({ type: "watch", visitorid: id });
      return () => this.unwatch(id);
    }

    /** Stops watching a visitor. */
    unwatch(visitorid) {
      const id = String(visitorid);
      if (this.watches.delete(id) && this.ready) this.send({ type: "unwatch", visitorid: id });
    }

    /** The visitor's presence document. */
    lookup(visitorid) {
      return this.request({ type: "lookup", visitorid: String(visitorid) }).then(strip);
    }

    /** The presence document of the visitor holding a 6-digit session key. */
    findSession(key) {
      return this.request({ type: "find_session", key: String(key).trim() }).then(strip);
    }

    /**
     * Runs a registered function in the visitor's page.
     * @returns {Promise<{ok: boolean, value?: unknown, error?: string}>}
     *   rejects with a PresenceError when there is no answer at all
     */
    invoke(visitorid, func, args = null, { timeoutMs } = {}) {
      const frame = { type: "invoke", visitorid: String(visitorid), func: String(func), args };
      if (timeoutMs !== undefined) frame.timeout_ms = timeoutMs;
      const deadline = (timeoutMs || REQUEST_DEADLINE_MS) + INVOKE_SLACK_MS;
      return this.request(frame, deadline).then((f) =>
        f.ok ? { ok: true, value: f.value } : { ok: false, error: f.error },
      );
    }

    /** Sends data to the visitor's `onsignal`; resolves once handed over. */
    signal(visitorid, data = null) {
      return this.request({ type: "signal", visitorid: String(visitorid), data }).then(() => undefined);
    }

    /**
     * Starts a confirmation prompt; resolves with the answer to read out.
     * The outcome arrives through `onconfirmation`.
     * @param {string} visitorid
     * @param {{choices?: number, agent?: {name?: string, email?: string, phone?: string}}} [options]
     */
    confirm(visitorid, options = {}) {
      const frame = { type: "confirm", visitorid: String(visitorid) };
      if (options.choices !== undefined) frame.choices = options.choices;
      if (options.agent) frame.agent = options.agent;
      return this.request(frame).then(strip);
    }

    /** @private Sends a frame with a fresh id and waits for its answer. */
    request(frame, deadlineMs = REQUEST_DEADLINE_MS) {
      return new Promise((resolve, reject) => {
        if (this.stopped) {
          reject(new PresenceError("not_connected", "call connect() first"));
          return;
        }
        const id = `r${this.nextId++}`;
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new PresenceError("timeout", "no answer from the presence server"));
        }, deadlineMs);
        this.pending.set(id, { resolve, reject, timer });
        const full = { ...frame, id };
        if (this.ready) this.send(full);
        else this.queue.push(full);
      });
    }

    /** @private */
    send(frame) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
    }

    /** @private Opens a socket with a usable token, or gives up. */
    async open() {
      const token = await Authorization.renew(this.groupid);
      if (this.stopped) return;
      if (!token) {
        this.stopped = true;
        this.failPending("token_expired", "no agent token; sign in again");
        this.queue = [];
        this.report(new PresenceError("token_expired", "no agent token; sign in again"));
        return;
      }
      const ws = new WebSocket(socketUrl(this.server));
      this.ws = ws;
      this.ready = false;
      this.tokenFailed = false;
      ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => this.closed(ws, event);
    }

    /** @private */
    closed(ws, event) {
      if (ws !== this.ws) return;
      this.ready = false;
      this.failPending("disconnected", "the connection to the presence server closed");
      if (this.onclose) this.onclose({ code: event.code, reason: event.reason });
      if (this.stopped) return;
      if (this.offlineSince === null) this.offlineSince = monotonicNow();
      const offline = monotonicNow() - this.offlineSince;
      if (this.tokenFailed) {
        // Renew at once the first time; a fresh token refused again (a
        // clock skew, say) backs off like any other failure. Watches are
        // sent again on the next ready.
        Authorization.clear(this.groupid);
        const attempt = this.attempt++;
        this.timer = setTimeout(() => this.open(), attempt === 0 ? 0 : backoffDelay(attempt, offline));
      } else if (event.code === 1008) {
        // Refused for a reason a retry will not fix (origin, group).
        this.stopped = true;
      } else {
        this.timer = setTimeout(() => this.open(), backoffDelay(this.attempt++, offline));
      }
    }

    /** @private */
    receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      if (frame.id !== undefined && frame.type !== "confirmation" && this.pending.has(frame.id)) {
        const waiter = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        clearTimeout(waiter.timer);
        if (frame.type === "error") waiter.reject(new PresenceError(frame.code, frame.message));
        else waiter.resolve(frame);
        return;
      }
      switch (frame.type) {
        case "ready":
          this.ready = true;
          this.attempt = 0;
          this.offlineSince = null;
          this.session = strip(frame);
          for (const visitorid of this.watches.keys()) this.send({ type: "watch", visitorid });
          for (const queued of this.queue.splice(0)) {
            if (this.pending.has(queued.id)) this.send(queued);
          }
          if (this.onready) this.onready(this.session);
          break;
        case "visitor":
          this.visitorEvent(frame);
          break;
        case "confirmation": {
          const event = { visitorid: frame.visitorid, id: frame.id, status: frame.status };
          const callbacks = this.watches.get(frame.visitorid);
          if (callbacks && callbacks.onconfirmation) callbacks.onconfirmation(event);
          if (this.onconfirmation) this.onconfirmation(event);
          break;
        }
        case "error":
          if (TOKEN_ERRORS.has(frame.code)) this.tokenFailed = true;
          this.report(new PresenceError(frame.code, frame.message));
          break;
      }
    }

    /** @private Hands a watch event to the visitor's callbacks. */
    visitorEvent(frame) {
      const callbacks = this.watches.get(frame.visitorid);
      if (!callbacks) return;
      const visitor = strip(frame);
      delete visitor.event;
      const call = (name) => typeof callbacks[name] === "function" && callbacks[name](visitor, frame.event);
      call("onstate");
      if (frame.event === "connected" || (frame.event === "state" && frame.online)) call("onconnected");
      else if (frame.event === "disconnected" || (frame.event === "state" && !frame.online)) call("ondisconnected");
      else if (frame.event === "presence") call("onpresence");
    }

    /** @private */
    failPending(code, message) {
      for (const [, waiter] of this.pending) {
        clearTimeout(waiter.timer);
        waiter.reject(new PresenceError(code, message));
      }
      this.pending.clear();
    }

    /** @private */
    report(error) {
      if (this.onerror) this.onerror(error);
    }
  }

  /** A frame without its `type` and `id`. */
  function strip(frame) {
    const { type, id, ...rest } = frame;
    return rest;
  }

  PresenceAgent.backoffDelay = backoffDelay;
  PresenceAgent.decodeClaims = decodeClaims;
  PresenceAgent.socketUrl = socketUrl;
  global.Authorization = Authorization;
  global.PresenceAgent = PresenceAgent;
  global.PresenceError = PresenceError;

  // A token handed over by the page: data-authtoken or a meta tag.
  const handed =
    (currentScript && currentScript.dataset && currentScript.dataset.authtoken) ||
    (global.document &&
      global.document.querySelector &&
      global.document.querySelector('meta[name="presence-authtoken"]') &&
      global.document.querySelector('meta[name="presence-authtoken"]').getAttribute("content"));
  if (handed) {
    try {
      Authorization.setToken(handed);
    } catch (error) {
      if (global.console) global.console.warn("presence-agent: ignoring a malformed auth token", error);
    }
  }
})(typeof window !== "undefined" ? window : globalThis);
