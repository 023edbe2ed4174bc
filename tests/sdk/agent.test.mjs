// Unit tests of the agent SDK under Node's test runner:
//   node --test tests/sdk/
// The SDK is loaded into a sandbox with a fake WebSocket, a fake fetch and
// an in-memory localStorage.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(new URL("../../src/web/sdk/presence-agent.js", import.meta.url), "utf8");

/** A JWT-shaped token with these claims (the SDK never checks signatures). */
function token(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", kid: "k1" })}.${part(claims)}.c2lnbmF0dXJl`;
}

function load({ now = 1_000_000, fetch } = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 1;
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    /** Delivers a server frame. */
    frame(value) { this.onmessage({ data: JSON.stringify(value) }); }
  }
  const items = new Map();
  const localStorage = {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
  const sandbox = {
    WebSocket: FakeSocket, URL, TextDecoder, atob, console, localStorage, fetch,
    setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout,
    location: { origin: "http://s.test" },
  };
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(source, sandbox);
  sandbox.Authorization.now = () => now;
  return { ...sandbox, sockets, items };
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test("tokens are stored per group and dropped when they expire", () => {
  const { Authorization, items } = load({ now: 1000 });
  const t72 = token({ sub: "fred", groupid: 72, role: "agent", exp: 1000 + 3600, jti: "a" });
  const t73 = token({ sub: "ann", groupid: 73, role: "administrator", exp: 1000 + 29, jti: "b" });
  const info = Authorization.setToken(t72);
  assert.equal(info.username, "fred");
  Authorization.setToken(t73);
  assert.equal(Authorization.getToken(72), t72);
  assert.equal(Authorization.getToken(74), null);
  assert.equal(Authorization.getToken(73), null, "within 30 s of expiry counts as expired");
  assert.equal(items.has("presence-agent-token:73"), false, "the expired token is forgotten");
  Authorization.now = () => 1000 + 3600 - 30;
  assert.equal(Authorization.getToken(72), null);
  assert.throws(() => Authorization.setToken("not-a-jwt"), /not a presence agent token/);
  assert.throws(() => Authorization.setToken(token({ sub: "x", exp: 5 })), /not a presence agent token/);
});

test("a corrupt stored entry is treated as no token", () => {
  const { Authorization, items } = load();
  items.set("presence-agent-token:72", "{not json");
  assert.equal(Authorization.getToken(72), null);
});

test("authorize posts the credentials and stores the token; errors keep their code", async () => {
  const calls = [];
  const t = token({ sub: "fred", groupid: 72, role: "agent", exp: 2_000_000, jti: "a" });
  const responses = [
    { ok: true, status: 200, json: async () => ({ token: t, expires: 2_000_000, groupid: 72 }) },
    { ok: false, status: 401, json: async () => ({ error: "invalid_credentials", message: "wrong" }) },
  ];
  const { Authorization } = load({
    fetch: async (url, init) => {
      calls.push({ url: String(url), init });
      return responses.shift();
    },
  });
  await Authorization.authorize({ groupid: 72, credentials: { username: "fred", password: "p" }, duration: 600 });
  assert.equal(calls[0].url, "http://s.test/auth/token");
  assert.deepEqual(JSON.parse(calls[0].init.body),
    { groupid: 72, credentials: { username: "fred", password: "p" }, duration: 600 });
  assert.equal(Authorization.getToken(72), t);
  await assert.rejects(
    Authorization.authorize({ groupid: 72, credentials: {} }),
    (e) => e.code === "invalid_credentials" && e.status === 401,
  );
});

test("a cookie sign-in at an auth service on another origin includes the cookie; others do not", async () => {
  const calls = [];
  const t = token({ sub: "fred", groupid: 72, role: "agent", exp: 2_000_000, jti: "a" });
  const { Authorization } = load({
    fetch: async (url, init) => {
      calls.push({ url: String(url), credentials: init.credentials });
      return { ok: true, status: 200, json: async () => ({ token: t, expires: 2_000_000, groupid: 72 }) };
    },
  });
  await Authorization.authorize({ groupid: 72, credentials: {}, server: "https://auth.test" });
  await Authorization.authorize({ groupid: 72, credentials: { username: "fred", password: "p" }, server: "https://auth.test" });
  await Authorization.authorize({ groupid: 72, credentials: {} });
  assert.deepEqual(calls, [
    { url: "https://auth.test/auth/token", credentials: "include" },
    { url: "https://auth.test/auth/token", credentials: "same-origin" },
    { url: "http://s.test/auth/token", credentials: "same-origin" },
  ]);
});

function connectedAgent(env, groupid = 72) {
  env.Authorization.setToken(token({ sub: "fred", groupid, role: "agent", exp: 2_000_000, jti: "a" }));
  const agent = new env.PresenceAgent({ groupid });
  agent.connect();
  return agent;
}

test("requests are matched to answers by id; errors reject with their code", async () => {
  const env = load();
  const agent = connectedAgent(env);
  await settle();
  const ws = env.sockets[0];
  assert.equal(ws.url, "ws://s.test/agent/ws");
  ws.onopen();
  assert.equal(ws.sent[0].type, "auth");
  // Asked before ready: queued, sent once ready.
  const lookup = agent.lookup("v-1");
  assert.equal(ws.sent.length, 1);
  ws.frame({ type: "ready", groupid: 72, username: "fred", role: "agent", expires: 2_000_000, functions: ["*"] });
  const sentLookup = ws.sent.at(-1);
  assert.equal(sentLookup.type, "lookup");
  const invoke = agent.invoke("v-1", "showTerms", { a: 1 }, { timeoutMs: 5000 });
  const sentInvoke = ws.sent.at(-1);
  assert.deepEqual({ ...sentInvoke, id: "" },
    { type: "invoke", visitorid: "v-1", func: "showTerms", args: { a: 1 }, timeout_ms: 5000, id: "" });
  ws.frame({ type: "result", id: sentInvoke.id, ok: false, error: "boom" });
  ws.frame({ type: "lookup", id: sentLookup.id, visitorid: "v-1", online: true, connections: 1 });
  assert.deepEqual({ ...(await lookup) }, { visitorid: "v-1", online: true, connections: 1 });
  assert.deepEqual({ ...(await invoke) }, { ok: false, error: "boom" });
  const find = agent.findSession(" 482913 ");
  assert.deepEqual({ ...ws.sent.at(-1), id: "" }, { type: "find_session", key: "482913", id: "" });
  ws.frame({ type: "error", id: ws.sent.at(-1).id, code: "session_key_not_found", message: "no" });
  await assert.rejects(find, (e) => e.code === "session_key_not_found");
  agent.close();
});

test("watch callbacks, and re-watch after a reconnect", async (t) => {
  // Timers are looked up when the SDK loads, so mock them first.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const env = load();
  const agent = connectedAgent(env);
  const events = [];
  agent.watch("v-1", {
    onconnected: (v) => events.push(["connected", v.online]),
    ondisconnected: (v) => events.push(["disconnected", v.online]),
    onpresence: (v) => events.push(["presence", v.data.url]),
    onconfirmation: (c) => events.push(["confirmation", c.status]),
  });
  await settle();
  let ws = env.sockets[0];
  ws.onopen();
  ws.frame({ type: "ready", groupid: 72, username: "fred", role: "agent", expires: 2_000_000 });
  assert.deepEqual({ ...ws.sent.at(-1) }, { type: "watch", visitorid: "v-1" });
  ws.frame({ type: "visitor", event: "state", visitorid: "v-1", online: false, connections: 0, data: {} });
  ws.frame({ type: "visitor", event: "connected", visitorid: "v-1", online: true, connections: 1, data: {} });
  ws.frame({ type: "visitor", event: "presence", visitorid: "v-1", online: true, connections: 1, data: { url: "/x" } });
  ws.frame({ type: "confirmation", visitorid: "v-1", id: "cid", status: "confirmed" });
  ws.frame({ type: "visitor", event: "state", visitorid: "v-2", online: true, connections: 1, data: {} });
  assert.deepEqual(events.map((e) => [...e]), [
    ["disconnected", false], ["connected", true], ["presence", "/x"], ["confirmation", "confirmed"],
  ]);

  // A dropped connection fails what was in flight and comes back with the watch.
  const pending = agent.lookup("v-1");
  ws.onclose({ code: 1006, reason: "" });
  await assert.rejects(pending, (e) => e.code === "disconnected");
  t.mock.timers.tick(500);
  await settle();
  assert.equal(env.sockets.length, 2, "reconnected after the backoff");
  ws = env.sockets[1];
  ws.onopen();
  ws.frame({ type: "ready", groupid: 72, username: "fred", role: "agent", expires: 2_000_000 });
  assert.deepEqual({ ...ws.sent.at(-1) }, { type: "watch", visitorid: "v-1" });
  agent.unwatch("v-1");
  assert.deepEqual({ ...ws.sent.at(-1) }, { type: "unwatch", visitorid: "v-1" });
  agent.close();
});

test("an expired token is renewed through onexpired and the watches survive", async (t) => {
  // Timers are looked up when the SDK loads, so mock them first.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const env = load();
  const agent = connectedAgent(env);
  agent.watch("v-1", {});
  await settle();
  let ws = env.sockets[0];
  ws.onopen();
  ws.frame({ type: "ready", groupid: 72, username: "fred", role: "agent", expires: 2_000_000 });
  const fresh = token({ sub: "fred", groupid: 72, role: "agent", exp: 3_000_000, jti: "b" });
  let asked = 0;
  env.Authorization.onexpired = async (groupid) => {
    asked++;
    assert.equal(groupid, 72);
    return fresh;
  };
  ws.frame({ type: "error", code: "token_expired", message: "expired" });
  ws.onclose({ code: 1008, reason: "" });
  t.mock.timers.tick(0);
  await settle();
  assert.equal(asked, 1);
  assert.equal(env.sockets.length, 2, "a token failure reconnects at once, not after 1008 gives up");
  ws = env.sockets[1];
  ws.onopen();
  assert.deepEqual({ ...ws.sent[0] }, { type: "auth", token: fresh });
  ws.frame({ type: "ready", groupid: 72, username: "fred", role: "agent", expires: 3_000_000 });
  assert.deepEqual({ ...ws.sent.at(-1) }, { type: "watch", visitorid: "v-1" });
  agent.close();
});

test("without a token and without onexpired, connect reports token_expired and stops", async () => {
  const env = load();
  const agent = new env.PresenceAgent({ groupid: 72 });
  const errors = [];
  agent.onerror = (e) => errors.push(e.code);
  agent.connect();
  await settle();
  assert.deepEqual(errors, ["token_expired"]);
  assert.equal(env.sockets.length, 0);
  await assert.rejects(agent.lookup("v-1"), (e) => e.code === "not_connected");
});

test("a policy close (origin, group) is final", async (t) => {
  // Timers are looked up when the SDK loads, so mock them first.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const env = load();
  connectedAgent(env);
  await settle();
  env.sockets[0].onopen();
  env.sockets[0].frame({ type: "error", code: "origin_not_allowed", message: "no" });
  env.sockets[0].onclose({ code: 1008, reason: "" });
  t.mock.timers.tick(60_000);
  await settle();
  assert.equal(env.sockets.length, 1);
});
