// End-to-end: the demo visitor page and the agent console in headless
// Chromium against the real server binary.
//   cargo build && npm run test:e2e
// Screenshots land in target/e2e/.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dialogButton, launchBrowser, screenshot, signIn, startServer } from "./harness.mjs";

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

/** A page that fails the test on any script error or CSP violation. */
async function newPage(viewport = { width: 1440, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (error) => page.problems.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) page.problems.push(`${response.status()} ${response.url()}`);
  });
  page.on("console", (message) => {
    // Failed loads are reported with their URL by the response hook.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      page.problems.push(`console: ${message.text()}`);
    }
  });
  return page;
}

function noProblems(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], "no script errors or CSP violations");
}

/** Waits until the element's text contains `want`. */
async function waitForText(page, selector, want) {
  await page.waitForFunction(
    ([sel, text]) => {
      const node = document.querySelector(sel);
      return node && node.textContent.includes(text);
    },
    [selector, want],
  );
}

/** Opens the demo page as visitor `visitorid` and waits until it is online. */
async function openVisitor(visitorid) {
  const page = await newPage({ width: 1024, height: 768 });
  await page.goto(`${server.url}/demo?visitorid=${encodeURIComponent(visitorid)}`);
  await waitForText(page, "#status", "online");
  return page;
}

/** Runs the confirmation from the console and presses the right button. */
async function confirmVisitor(console, visitor, screenshotName) {
  await console.click("#confirm-start");
  await console.locator("#confirm-answer strong").waitFor();
  const answer = (await console.textContent("#confirm-answer strong")).trim();
  assert.match(answer, /^\d\d$/);
  await visitor.waitForSelector("presence-visitor-ui", { state: "attached" });
  await dialogButton(visitor, answer).waitFor();
  if (screenshotName) await screenshot(visitor, screenshotName);
  await dialogButton(visitor, answer).click();
  await waitForText(console, "#confirm-status", "Confirmed");
  await waitForText(console, "#visitor-confirmed", "yes");
}

test("sign in, find by id, confirm, invoke showMessage and see the result", async () => {
  const visitor = await openVisitor("e2e-shopper-1");
  const console = await newPage();
  await console.goto(`${server.url}/console`);
  await signIn(console, "fred.demo", "fred-demo-pass");
  await console.locator("#find-input").waitFor();
  assert.equal(await console.inputValue("#sign-in-password"), "", "the password is not kept in the page");

  await console.fill("#find-input", "e2e-shopper-1");
  await console.click("#find-form button");
  await waitForText(console, "#visitor-status", "online");
  await waitForText(console, "#visitor-page-title", "presence-server demo shop");
  assert.equal(await console.textContent("#visitor-tabs"), "1");

  await confirmVisitor(console, visitor, "visitor-confirm-dialog");

  const hostile = '<img src=x onerror="window.pwned=1">Hello from Fred';
  await console.fill("#invoke-func", "showMessage");
  await console.fill("#invoke-args", JSON.stringify({ text: hostile }));
  await console.click("#invoke-form button");
  await waitForText(console, "#invoke-results li", 'showMessage → "shown"');
  await waitForText(visitor, "#messages", "Hello from Fred");
  assert.equal(await visitor.textContent("#messages li"), hostile, "rendered as text");
  assert.equal(await visitor.locator("#messages img").count(), 0);
  assert.equal(await visitor.evaluate(() => window.pwned), undefined);

  // A function the page did not register comes back as a failed result.
  await console.fill("#invoke-func", "notRegistered");
  await console.fill("#invoke-args", "null");
  await console.click("#invoke-form button");
  await waitForText(console, "#invoke-results li", "notRegistered failed in the page");
  // Bad JSON never leaves the console.
  await console.fill("#invoke-args", "{oops");
  await console.click("#invoke-form button");
  await waitForText(console, "#invoke-error", "not valid JSON");

  await screenshot(console, "console-1440");
  noProblems(visitor, console);
  await visitor.context().close();
  await console.context().close();
});

test("find by session key; visitor data with markup stays text", async () => {
  const visitor = await openVisitor("e2e-shopper-2");
  await visitor.click("#session-key");
  await visitor.waitForFunction(() => /^\d{6}$/.test(document.getElementById("key").textContent));
  const key = await visitor.textContent("#key");
  const hostile = "<b>bold</b><img src=x onerror=\"window.pwned=1\">";
  await visitor.evaluate((title) => window.presenceVisitor.presence({ title }), hostile);

  const console = await newPage();
  await console.goto(`${server.url}/console?groupid=72`);
  await signIn(console, "fred.demo", "fred-demo-pass");
  await console.fill("#find-input", key);
  await console.click("#find-form button");
  await waitForText(console, "#visitor-id", "e2e-shopper-2");
  await waitForText(console, "#visitor-page-title", "<b>bold</b>");
  assert.equal(await console.textContent("#visitor-page-title"), hostile);
  assert.equal(await console.locator("#visitor img, #visitor b").count(), 0);
  assert.equal(await console.evaluate(() => window.pwned), undefined);

  // A wrong key is a clear error, not a visitor.
  await console.fill("#find-input", key === "000000" ? "000001" : "000000");
  await console.click("#find-form button");
  await waitForText(console, "#find-error", "session_key_not_found");
  noProblems(visitor, console);
  await visitor.context().close();
  await console.context().close();
});

test("a page navigation does not show as offline; leaving does", async () => {
  const visitor = await openVisitor("e2e-shopper-3");
  const console = await newPage();
  await console.goto(`${server.url}/console/view?groupid=72&visitorid=e2e-shopper-3`);
  await signIn(console, "fred.demo", "fred-demo-pass");
  await waitForText(console, "#visitor-status", "online");
  // Record every status the console shows from here on.
  await console.evaluate(() => {
    window.seen = [];
    const status = document.getElementById("visitor-status");
    new MutationObserver(() => window.seen.push(status.textContent)).observe(status, {
      childList: true, characterData: true, subtree: true,
    });
  });

  await visitor.click("#next-page");
  await visitor.waitForURL(/page=2/);
  await waitForText(visitor, "#status", "online");
  await waitForText(console, "#visitor-page-url", "page=2");
  const seen = await console.evaluate(() => window.seen);
  assert.ok(!seen.includes("offline"), `statuses seen: ${JSON.stringify(seen)}`);

  // Closing the tab for good does show offline, after the grace period.
  await visitor.context().close();
  await waitForText(console, "#visitor-status", "offline");
  noProblems(console);
  await console.context().close();
});

test("a deep link lands on its visitor after sign-in, usable at 360 px", async () => {
  const visitor = await openVisitor("e2e-shopper-4");
  const console = await newPage({ width: 360, height: 740 });
  await console.goto(
    `${server.url}/console/view?groupid=72&visitorid=e2e-shopper-4&name=${encodeURIComponent("Fred at Acme")}`,
  );
  await signIn(console, "fred.demo", "fred-demo-pass");
  await waitForText(console, "#visitor-id", "e2e-shopper-4");
  await waitForText(console, "#visitor-status", "online");
  const overflow = await console.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 360, `no horizontal scrolling at 360 px (scrollWidth ${overflow})`);

  // The name from the link is who the visitor sees asking.
  await console.click("#confirm-start");
  await visitor.waitForSelector("presence-visitor-ui", { state: "attached" });
  const text = await visitor.locator("presence-visitor-ui").locator("#presence-confirm-text").textContent();
  assert.match(text, /Fred at Acme is asking/);
  await screenshot(console, "console-360");
  await dialogButton(visitor, "Decline").click();
  await waitForText(console, "#confirm-status", "declined");
  noProblems(visitor, console);
  await visitor.context().close();
  await console.context().close();
});

test("/console/join asks for a session key and opens the view in the same window", async () => {
  const visitor = await openVisitor("e2e-shopper-5");
  await visitor.click("#session-key");
  await visitor.waitForFunction(() => /^\d{6}$/.test(document.getElementById("key").textContent));
  const key = await visitor.textContent("#key");

  const console = await newPage();
  await console.goto(`${server.url}/console/join?groupid=72&viewersamewindow=1`);
  await signIn(console, "fred.demo", "fred-demo-pass");
  await console.fill("#join-key", key);
  await console.click("#join-form button");
  await console.waitForURL(/\/console\/view\?.*visitorid=e2e-shopper-5/);
  await waitForText(console, "#visitor-status", "online");
  noProblems(visitor, console);
  await visitor.context().close();
  await console.context().close();
});

test("SSO via idpid: the IdP's JWT signs in and leaves the address bar", async () => {
  const visitor = await openVisitor("e2e-shopper-6");
  const console = await newPage();
  await console.goto(`${server.url}/console/view?idpid=72&visitorid=e2e-shopper-6`);
  await waitForText(console, "#who", "jane@acme.example");
  await waitForText(console, "#visitor-status", "online");
  assert.ok(!console.url().includes("jwt"), `jwt stripped: ${console.url()}`);
  assert.ok(console.url().includes("visitorid=e2e-shopper-6"));
  // The SSO display name is the card the visitor sees.
  await console.click("#confirm-start");
  await visitor.waitForSelector("presence-visitor-ui", { state: "attached" });
  const text = await visitor.locator("presence-visitor-ui").locator("#presence-confirm-text").textContent();
  assert.match(text, /Jane from Acme is asking/);
  noProblems(visitor, console);
  await visitor.context().close();
  await console.context().close();
});

test("administrators see online visitors and the token audit", async () => {
  const visitor = await openVisitor("e2e-shopper-7");
  const console = await newPage();
  await console.goto(`${server.url}/console`);
  await signIn(console, "ada.admin", "ada-admin-pass");
  await waitForText(console, "#online-list", "e2e-shopper-7");
  await waitForText(console, "#audit-list", "issued");
  await console.getByRole("button", { name: "Open visitor e2e-shopper-7" }).click();
  await waitForText(console, "#visitor-id", "e2e-shopper-7");
  await screenshot(console, "console-admin-1440");

  // An agent gets no administrator panels.
  const agent = await newPage();
  await agent.goto(`${server.url}/console`);
  await signIn(agent, "fred.demo", "fred-demo-pass");
  await agent.locator("#find-input").waitFor();
  assert.equal(await agent.locator("#admin").isHidden(), true);

  // Signing out revokes the token and ends the session.
  await console.click("#sign-out");
  await waitForText(console, "#sign-in-error", "Signed out");
  await console.reload();
  await console.locator("#sign-in-form").waitFor();
  noProblems(visitor, console, agent);
  for (const page of [visitor, console, agent]) await page.context().close();
});

test("wrong password: a clear error and no token", async () => {
  const console = await newPage();
  await console.goto(`${server.url}/console`);
  await signIn(console, "fred.demo", "not-the-password");
  await waitForText(console, "#sign-in-error", "invalid_credentials");
  assert.equal(await console.evaluate(() => localStorage.getItem("presence-agent-token:72")), null);
  // The console logs the refused login as a 401 resource error; that is expected.
  await console.context().close();
});
