// End-to-end: invoke receipts across page reloads, in headless Chromium
// against the real server binary. The demo visitor page registers `count`
// (added by an init script), which
// bumps a per-invoke counter in sessionStorage (it survives reloads); the
// agent invokes it over REST while the page reloads, at varying moments of
// the navigation. Every invoke must succeed, and each must have run exactly
// once: none lost, none run twice.
//   cargo build && npm run test:e2e
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, startServer } from "./harness.mjs";

/** Reloads of the visitor page (the brief asks for at least 50). */
const RELOADS = 70;
/** How long any one wait may take before the test fails. */
const DEADLINE_MS = 15000;
const VISITOR = "e2e-reloader";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * Runs in every document of the tab before the demo page's scripts. The
 * demo builds its PresenceVisitor, then publishes it as
 * `window.presenceVisitor` just before `connect()`: the setter registers
 * `count` there, so it is in place before any invoke can arrive. `count`
 * records each run in sessionStorage and returns the run number.
 */
function registerCount() {
  let visitor;
  Object.defineProperty(window, "presenceVisitor", {
    configurable: true,
    get: () => visitor,
    set(value) {
      visitor = value;
      visitor.register("count", (args) => {
        const key = "e2e-runs:" + args.n;
        const runs = Number(sessionStorage.getItem(key) || 0) + 1;
        sessionStorage.setItem(key, String(runs));
        return { n: args.n, runs };
      });
    },
  });
}

/** Resolves `promise`, or rejects once `ms` have passed. */
function withDeadline(promise, what, ms = DEADLINE_MS) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Watches the page's WebSocket frames (every socket of every document in
 * the tab), so the test can wait for "the invoke reached the browser" or
 * "the page said received" instead of guessing with a timer.
 */
function frameWatch(page) {
  const seen = [];
  let waiters = [];
  const record = (socket, direction, payload) => {
    let frame;
    try {
      frame = JSON.parse(String(payload));
    } catch {
      return;
    }
    seen.push({ socket, direction, frame });
    waiters = waiters.filter((w) => !(w.match(direction, frame, socket) && (w.resolve({ socket, frame }), true)));
  };
  page.on("websocket", (ws) => {
    ws.on("framereceived", ({ payload }) => record(ws, "in", payload));
    ws.on("framesent", ({ payload }) => record(ws, "out", payload));
  });
  return {
    /**
     * Resolves with the first frame (past or future) that `match`es, and
     * the socket it went over (invoke ids are per socket).
     */
    waitFor(what, match) {
      const hit = seen.find(({ socket, direction, frame }) => match(direction, frame, socket));
      if (hit) return Promise.resolve(hit);
      return withDeadline(new Promise((resolve) => waiters.push({ match, resolve })), what);
    },
  };
}

/** An invoke frame carrying `count` for invoke number `n`. */
const invokeOf = (n) => (direction, frame) =>
  direction === "in" && frame.type === "invoke" && frame.func === "count" && frame.args?.n === n;

async function agentToken() {
  const response = await fetch(`${server.url}/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ groupid: 72, credentials: { username: "fred.demo", password: "fred-demo-pass" } }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

/** Samples of the server's private /metrics whose name starts with `prefix`. */
async function metrics(prefix) {
  const match = server.logs.join("").match(/metrics=Some\(([^)]+)\)/);
  assert.ok(match, "the server logs its metrics address");
  const text = await (await fetch(`http://${match[1]}/metrics`)).text();
  return text.split("\n").filter((line) => line.startsWith(prefix)).join(", ");
}

/** Waits until the lookup endpoint shows the visitor with an open socket. */
async function waitOnline(token) {
  const started = Date.now();
  for (;;) {
    const response = await fetch(`${server.url}/presence/72/visitors/${VISITOR}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = await response.json();
    if (body.online === true && body.connections >= 1) return body;
    if (Date.now() - started > DEADLINE_MS) throw new Error(`visitor never online: ${JSON.stringify(body)}`);
  }
}

test(`${RELOADS} reloads with invokes in flight: every invoke runs exactly once`, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  const problems = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  const pageUrl = `${server.url}/demo?visitorid=${VISITOR}`;
  await context.addInitScript(registerCount);
  const frames = frameWatch(page);
  const token = await agentToken();

  let next = 0;
  const calls = [];
  /** Fires invoke number n over REST; its promise is checked at the end. */
  const invoke = () => {
    const n = next++;
    const call = fetch(`${server.url}/presence/72/visitors/${VISITOR}/invoke`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ func: "count", args: { n }, timeout_ms: 60000 }),
    }).then(async (response) => ({ n, status: response.status, body: await response.json() }));
    calls.push(call);
    return n;
  };
  // The demo page shows "online" once its socket is welcomed.
  const online = () => page.waitForFunction(() => document.getElementById("status")?.textContent === "online");

  await page.goto(pageUrl);
  await online();
  await waitOnline(token);

  // Each step reloads once, with invokes landing at a different moment of
  // the navigation.
  const steps = [
    // Fired, then the reload starts at once: the invoke races the pagehide.
    async () => { invoke(); await page.reload(); },
    // The invoke has reached the old page's socket when the reload starts.
    async () => { const n = invoke(); await frames.waitFor(`invoke ${n}`, invokeOf(n)); await page.reload(); },
    // The old page said `received` (its function ran) when the reload starts.
    async () => {
      const n = invoke();
      const { socket, frame } = await frames.waitFor(`invoke ${n}`, invokeOf(n));
      await frames.waitFor(
        `received ${n}`,
        (d, f, s) => s === socket && d === "out" && f.type === "received" && f.id === frame.id,
      );
      await page.reload();
    },
    // Fired while the reload's request is on its way (the old page is
    // still up, or in pagehide).
    async () => {
      const request = page.waitForRequest((r) => r.url() === pageUrl && r.isNavigationRequest());
      const reload = page.reload();
      await request;
      invoke();
      await reload;
    },
    // Fired once the new page has opened its socket, before its welcome.
    async () => {
      const socket = page.waitForEvent("websocket");
      const reload = page.reload();
      await socket;
      invoke();
      await reload;
    },
    // A burst of invokes, then the reload.
    async () => { invoke(); invoke(); invoke(); await page.reload(); },
    // Reloaded again as soon as the new page has opened its socket: the
    // invoke may be parked for a page that itself goes away before its
    // welcome.
    async () => {
      invoke();
      const socket = page.waitForEvent("websocket");
      await page.reload({ waitUntil: "commit" });
      await socket;
      invoke();
      await page.reload();
    },
  ];
  let reloads = 0;
  for (let i = 0; reloads < RELOADS; i++) {
    const step = steps[i % steps.length];
    await step().catch((error) => {
      throw new Error(`step ${i % steps.length} (reload ${reloads + 1}): ${error.message}`);
    });
    reloads += step === steps[6] ? 2 : 1;
    await online();
  }

  const results = await withDeadline(Promise.all(calls), "every invoke's answer", 90000);
  const failed = results.filter((r) => r.status !== 200 || r.body.ok !== true || r.body.value?.n !== r.n);
  assert.deepEqual(failed, [], `${failed.length} of ${results.length} invokes failed`);

  const runs = await page.evaluate(() => {
    const out = {};
    for (let i = 0; i < sessionStorage.length; i++) {
      const key = sessionStorage.key(i);
      if (key.startsWith("e2e-runs:")) out[key.slice("e2e-runs:".length)] = Number(sessionStorage.getItem(key));
    }
    return out;
  });
  const expected = Object.fromEntries(results.map((r) => [String(r.n), 1]));
  assert.deepEqual(runs, expected, "each invoke ran exactly once");
  // Its own run count, as the function saw it, is 1 for every invoke.
  assert.deepEqual(results.filter((r) => r.body.value.runs !== 1), []);
  assert.deepEqual(problems, []);
  const reparked = await metrics("presence_invokes_reparked_total");
  const closes = await metrics("presence_visitor_closes_total");
  console.log(`# ${reloads} reloads, ${results.length} invokes, each ran once; ${reparked}; ${closes}`);
  await context.close();
});
