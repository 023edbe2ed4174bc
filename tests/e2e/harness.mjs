// Starts the real presence-server binary and a headless Chromium for the
// end-to-end tests. The server listens on a loopback port picked by the OS
// for each run; a tiny identity provider (a node:http server on port 0)
// plays the customer's SSO sign-in page.
import { spawn } from "node:child_process";
import { createSign, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const screenshots = path.join(root, "target", "e2e");
// The binary `cargo build` wrote, under CARGO_TARGET_DIR when that is set.
const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR || "target");
const binary = process.env.PRESENCE_BIN || path.join(targetDir, "debug", "presence-server");

/** A loopback port the OS considers free right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** An RS256 JWT signed with a test key, as a customer's IdP would. */
export function signSso(claims, keyFile = "group72-a.key.pem") {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${encode({ alg: "RS256", typ: "JWT" })}.${encode(claims)}`;
  const signer = createSign("RSA-SHA256");
  signer.update(body);
  const key = readFileSync(path.join(root, "tests", "keys", keyFile));
  return `${body}.${signer.sign(key).toString("base64url")}`;
}

/** The customer's sign-in page: signs the agent in and sends it back. */
function startIdentityProvider(audience) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://idp");
    const back = url.searchParams.get("return_to");
    if (url.pathname !== "/login" || !back || !back.startsWith(audience)) {
      res.writeHead(400).end("bad sign-in request");
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const jwt = signSso({
      iss: "acme-license-72", aud: audience, sub: "jane@acme.example", iat: now, exp: now + 300,
      jti: randomUUID(), displayName: "Jane from Acme",
    });
    const target = new URL(back);
    target.searchParams.set("jwt", jwt);
    res.writeHead(302, { location: target.toString() }).end();
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

/**
 * Starts the server on the e2e config. Resolves once it logs "listening".
 * @returns {Promise<{url: string, stop: () => Promise<void>, logs: string[]}>}
 */
export async function startServer() {
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo build\` first (or set PRESENCE_BIN)`);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idp = await startIdentityProvider(url);
  const dir = mkdtempSync(path.join(tmpdir(), "presence-e2e-"));
  const config = readFileSync(path.join(here, "e2e.toml"), "utf8")
    .replaceAll("{PORT}", String(port))
    .replaceAll("{DATA_DIR}", path.join(dir, "data"))
    .replaceAll("{KEYS}", path.join(root, "tests", "keys"))
    .replaceAll("{IDP}", `http://127.0.0.1:${idp.address().port}`);
  const configFile = path.join(dir, "presence.toml");
  writeFileSync(configFile, config);
  const child = spawn(binary, ["serve", "--config", configFile], {
    env: { ...process.env, RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs = [];
  await new Promise((resolve, reject) => {
    const onData = (chunk) => {
      const text = chunk.toString();
      logs.push(text);
      if (text.includes("listening")) resolve();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`server exited with ${code}:\n${logs.join("")}`)));
  });
  return {
    url,
    logs,
    async stop() {
      idp.close();
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A headless Chromium. */
export function launchBrowser() {
  mkdirSync(screenshots, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** Saves a screenshot under target/e2e/. */
export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

/** The demo page's confirmation dialog button with this label. */
export function dialogButton(page, name) {
  return page.locator("presence-visitor-ui").getByRole("button", { name, exact: true });
}

/** Signs in on the console page (which must show the sign-in form). */
export async function signIn(page, username, password, groupid = "72") {
  const group = page.locator("#sign-in-group");
  await group.waitFor();
  await group.fill(groupid);
  await page.fill("#sign-in-username", username);
  await page.fill("#sign-in-password", password);
  await page.click("#sign-in-submit");
}
