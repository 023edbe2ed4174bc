// Unit tests of the visitor SDK under Node's test runner:
//   node --test tests/sdk/
// The SDK is a plain browser script; it is loaded into a sandbox whose
// WebSocket is a fake that records frames.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(new URL("../../src/web/sdk/presence-visitor.js", import.meta.url), "utf8");

function load(storage) {
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
  }
  // Timers are looked up now, so a test can install mock timers first.
  const listeners = {};
  const sandbox = { WebSocket: FakeSocket, URL, setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, console };
  sandbox.addEventListener = (type, fn) => { (listeners[type] ||= []).push(fn); };
  sandbox.dispatch = (type, event) => { for (const fn of listeners[type] || []) fn(event); };
  if (storage) sandbox.sessionStorage = storage;
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(source, sandbox);
  return { PresenceVisitor: sandbox.PresenceVisitor, sockets, dispatch: sandbox.dispatch };
}

test("backoff is uniform between 500 ms and its ceiling, at most 20 s", () => {
  const { PresenceVisitor } = load();
  const delay = PresenceVisitor.backoffDelay;
  const long = 3600 * 1000; // offline long enough not to bound the wait
  assert.equal(delay(0, 0, () => 0), 500, "never below the floor");
  assert.equal(delay(0, long, () => 0.999), 500);
  assert.equal(delay(3, long, () => 0.5), 2250, "halfway between 500 and 4000");
  assert.equal(delay(1, long, () => 0.5), 750, "not clamped up to the floor");
  assert.equal(delay(10, long, () => 0.999999), 19999);
  assert.equal(delay(1000, long, () => 0.999999), 19999, "capped at 20 s");
  for (let attempt = 0; attempt < 40; attempt++) {
    const d = delay(attempt, long);
    assert.ok(d >= 500 && d <= 20000, `attempt ${attempt}: ${d}`);
  }
});

test("backoff never waits longer than the time already offline", () => {
  const { PresenceVisitor } = load();
  const delay = PresenceVisitor.backoffDelay;
  // Four refused attempts in 2.5 s would allow 8 s; the cap is the 2.5 s.
  assert.equal(delay(4, 2500, () => 0.999999), 2499);
  assert.equal(delay(4, 100, () => 0.999999), 500, "the floor still holds");
  for (let offline = 0; offline < 30000; offline += 250) {
    const d = delay(20, offline, () => 0.999999);
    assert.ok(d <= Math.max(500, offline), `offline ${offline}: ${d}`);
  }
  // Called without the time offline (the old signature): bounded by the
  // attempt alone, never NaN (which would make setTimeout fire at once).
  for (const d of [delay(3), delay(3, undefined, () => 0.999999), delay(3, NaN)]) {
    assert.ok(d >= 500 && d <= 4000, `${d}`);
  }
});

test("presence data keeps only strings and finite numbers", () => {
  const { PresenceVisitor } = load();
  assert.deepEqual(
    { ...PresenceVisitor.cleanData({ a: "x", b: 2, c: null, d: {}, e: NaN, f: true }) },
    { a: "x", b: 2 },
  );
});

test("the socket URL follows the server's scheme", () => {
  const { PresenceVisitor } = load();
  assert.equal(PresenceVisitor.socketUrl("https://p.example.com", 72), "wss://p.example.com/visitor/ws?groupid=72");
  assert.equal(PresenceVisitor.socketUrl("http://127.0.0.1:8080/x", 7), "ws://127.0.0.1:8080/visitor/ws?groupid=7");
});

test("hello, registered functions, thrown errors and unknown functions", async () => {
  const { PresenceVisitor, sockets } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.register("add", ({ a, b }) => a + b);
  v.register("later", async () => "done");
  v.register("fails", () => { throw new Error("nope"); });
  v.connect();
  const ws = sockets[0];
  ws.onopen();
  assert.deepEqual({ ...ws.sent[0], data: { ...ws.sent[0].data } },
    { type: "hello", groupid: 72, visitorid: "v-1", data: {}, receipts: true });
  let ready = 0;
  v.onready = () => ready++;
  ws.onmessage({ data: JSON.stringify({ type: "welcome", visitorid: "v-1", connection: "c" }) });
  assert.equal(ready, 1);
  const results = () => ws.sent.filter((f) => f.type === "result").map((f) => ({ ...f }));
  ws.onmessage({ data: JSON.stringify({ type: "invoke", id: "1", func: "add", args: { a: 2, b: 3 } }) });
  ws.onmessage({ data: JSON.stringify({ type: "invoke", id: "2", func: "later", args: null }) });
  ws.onmessage({ data: JSON.stringify({ type: "invoke", id: "3", func: "fails", args: null }) });
  ws.onmessage({ data: JSON.stringify({ type: "invoke", id: "4", func: "eval", args: "1" }) });
  await new Promise((r) => setImmediate(r));
  const byId = Object.fromEntries(results().map((r) => [r.id, r]));
  assert.deepEqual(byId, {
    1: { type: "result", id: "1", ok: true, value: 5 },
    2: { type: "result", id: "2", ok: true, value: "done" },
    3: { type: "result", id: "3", ok: false, error: "nope" },
    4: { type: "result", id: "4", ok: false, error: "function eval is not registered" },
  });
});

test("a closed socket reconnects with a fresh hello, except after 1008", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { PresenceVisitor, sockets } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.connect();
  sockets[0].onopen();
  sockets[0].onclose({ code: 1006, reason: "" });
  t.mock.timers.tick(499);
  assert.equal(sockets.length, 1, "not before the backoff");
  t.mock.timers.tick(1);
  assert.equal(sockets.length, 2, "reconnected after the first backoff (500 ms)");
  sockets[1].onopen();
  assert.equal(sockets[1].sent[0].type, "hello");
  sockets[1].onclose({ code: 1008, reason: "identity_invalid" });
  t.mock.timers.tick(60_000);
  assert.equal(sockets.length, 2, "a policy close is final");
  v.close();
});

/** A visitor the fake server has welcomed, and its sockets. */
function welcomedVisitor() {
  const { PresenceVisitor, sockets } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.connect();
  sockets[0].onopen();
  sockets[0].onmessage({ data: JSON.stringify({ type: "welcome" }) });
  return { v, sockets };
}

test("a session key request resolves with the code", async () => {
  const { v, sockets } = welcomedVisitor();
  const key = v.requestSessionKey();
  assert.equal(sockets[0].sent.at(-1).type, "session_key");
  sockets[0].onmessage({ data: JSON.stringify({ type: "session_key", key: "482913", expires: 1 }) });
  assert.equal(await key, "482913");
  v.close();
});

test("a rate-limited session key request rejects with the server's message", async () => {
  const { v, sockets } = welcomedVisitor();
  const key = v.requestSessionKey();
  sockets[0].onmessage({ data: JSON.stringify({ type: "error", code: "rate_limited", message: "retry in 20 s" }) });
  await assert.rejects(key, /retry in 20 s/);
  v.close();
});

test("confirmation tickets are kept per tab and presented in every hello", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const items = new Map();
  const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)) };
  const { PresenceVisitor, sockets } = load(storage);
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.connect();
  sockets[0].onopen();
  assert.equal(sockets[0].sent[0].tickets, undefined, "no tickets yet");
  sockets[0].onmessage({ data: JSON.stringify({ type: "confirm_ticket", id: "c1", ticket: "T1" }) });
  sockets[0].onclose({ code: 1006 });
  t.mock.timers.tick(20000);
  sockets[1].onopen();
  assert.deepEqual([...sockets[1].sent[0].tickets], ["T1"]);
  for (let i = 0; i < 20; i++) PresenceVisitor.saveTicket(72, "v-1", `X${i}`);
  const kept = PresenceVisitor.loadTickets(72, "v-1");
  assert.equal(kept.length, 16, "at most 16");
  assert.equal(kept[15], "X19");
  assert.deepEqual([...PresenceVisitor.loadTickets(72, "v-2")], [], "per visitor");
  items.set("presence-tickets:72:v-3", "not json");
  assert.deepEqual([...PresenceVisitor.loadTickets(72, "v-3")], [], "a corrupt entry is ignored");
});

test("an invoke is acknowledged with received before its function runs", async () => {
  const { PresenceVisitor, sockets } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  const ws = () => sockets[0];
  let sentWhenRun = null;
  v.register("f", () => { sentWhenRun = ws().sent.map((f) => ({ ...f })); return 1; });
  v.connect();
  ws().onopen();
  ws().onmessage({ data: JSON.stringify({ type: "welcome", visitorid: "v-1", connection: "c" }) });
  ws().onmessage({ data: JSON.stringify({ type: "invoke", id: "7", func: "f", args: null }) });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sentWhenRun.at(-1), { type: "received", id: "7" });
  assert.deepEqual({ ...ws().sent.at(-1) }, { type: "result", id: "7", ok: true, value: 1 });
});

test("pagehide says leaving; a page restored from the bfcache reconnects", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { PresenceVisitor, sockets, dispatch } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.connect();
  sockets[0].onopen();
  dispatch("pagehide", { persisted: true });
  assert.deepEqual({ ...sockets[0].sent.at(-1) }, { type: "leaving" });
  dispatch("pageshow", { persisted: false });
  assert.equal(sockets[0].readyState, 1, "a fresh load keeps its socket");
  dispatch("pageshow", { persisted: true });
  assert.equal(sockets[0].readyState, 3, "the restored page's old socket is closed");
  sockets[0].onclose({ code: 1000, reason: "" });
  t.mock.timers.tick(20000);
  assert.equal(sockets.length, 2, "and a new one opened");
});

test("a page restored after the server closed its leaving socket reconnects once", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { PresenceVisitor, sockets, dispatch } = load();
  const v = new PresenceVisitor({ server: "http://s.test", groupid: 72, visitorid: "v-1", presence: false });
  v.connect();
  sockets[0].onopen();
  dispatch("pagehide", { persisted: true });
  // In the cache past reconnect_grace_ms: the server closed the socket.
  sockets[0].readyState = 3;
  sockets[0].onclose({ code: 1000, reason: "left" });
  dispatch("pageshow", { persisted: true });
  t.mock.timers.tick(20000);
  assert.equal(sockets.length, 2, "one new socket");
  sockets[1].onopen();
  assert.equal(sockets[1].sent[0].type, "hello");
});
