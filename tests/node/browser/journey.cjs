// A user's visit to QHub in a real browser: Debian's chromium, driven by playwright-core (which downloads no
// browser). Run by tests/node/test_browser_journey.py:
//
//   NODE_PATH=<dir with playwright-core> node journey.cjs '<json>'
//
// json: {mode: "lab" | "profiles", url, username, password, artifacts, chromium,
//        profile (lab: the slug to pick), code (lab: the cell to run), timeoutMs (lab: login to output)}
// "profiles" logs in and lists the profiles the spawn page offers; "lab" also picks `profile`, waits for JupyterLab,
// opens a new notebook, runs `code` and reads the cell's output from the page.
// Prints one JSON line on stdout: {ok, step, ...results}. On failure it also leaves <username>-failed-<step>.png;
// the page's console log is always written to <username>-console.log in `artifacts`.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const spec = JSON.parse(process.argv[2]);
const out = { ok: false, step: "start", username: spec.username, timings: {} };
const consoleLines = [];
let page = null;

function artifact(name) {
  return path.join(spec.artifacts, `${spec.username}-${name}`);
}

async function step(name, fn) {
  out.step = name;
  const started = Date.now();
  const value = await fn();
  out.timings[name] = Date.now() - started;
  return value;
}

async function login() {
  await step("open-login-page", async () => {
    await page.goto(spec.url + "hub/login", { waitUntil: "domcontentloaded" });
    await page.locator("#username_input").waitFor();
  });
  await step("submit-login", async () => {
    await page.fill("#username_input", spec.username);
    await page.fill("#password_input", spec.password);
    await Promise.all([page.waitForURL((u) => !u.pathname.endsWith("/hub/login")), page.click("#login_submit")]);
  });
}

async function listProfiles() {
  return step("read-spawn-page", async () => {
    if (!new URL(page.url()).pathname.endsWith("/hub/spawn")) {
      await page.goto(spec.url + "hub/spawn", { waitUntil: "domcontentloaded" });
    }
    const radios = page.locator('input[type="radio"][name="profile"]');
    await radios.first().waitFor();
    const profiles = [];
    for (const radio of await radios.all()) {
      const slug = await radio.getAttribute("value");
      const title = await page.locator(`label[for="profile-item-${slug}"] h3`).innerText();
      profiles.push({ slug, title: title.trim() });
    }
    return profiles;
  });
}

async function lab() {
  const loginStarted = Date.now();
  await login();
  out.profiles = await listProfiles();
  await step("pick-profile", async () => {
    await page.check(`#profile-item-${spec.profile}`);
    await page.screenshot({ path: artifact("spawn-page.png") });
    await page.click('form button[type="submit"]');
  });
  await step("wait-for-jupyterlab", async () => {
    await page.waitForURL((u) => u.pathname.startsWith(`/user/${spec.username}/lab`), { timeout: spec.timeoutMs });
    await page.locator(".jp-LauncherCard").first().waitFor({ timeout: spec.timeoutMs });
  });
  out.loginToLabMs = Date.now() - loginStarted;
  await step("open-notebook", async () => {
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first().click();
    await page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first().waitFor();
  });
  await step("wait-for-kernel", async () => {
    // the status bar names the notebook's kernel and its state; a run sent while JupyterLab still swaps the new
    // session's first kernel can be lost, so wait until the kernel is idle
    await page.locator("#jp-main-statusbar").getByText(/\|\s*Idle\s*$/).first().waitFor({ timeout: 180000 });
  });
  await step("run-cell", async () => {
    const cell = page.locator(".jp-NotebookPanel .jp-Cell").first();
    await cell.locator(".cm-content").click();
    await page.keyboard.type(spec.code);
    const output = cell.locator(".jp-OutputArea-output").first();
    for (let attempt = 1; ; attempt++) {
      await cell.locator(".cm-content").click();
      await page.keyboard.press("Control+Enter"); // run in place
      try {
        await output.waitFor({ timeout: 60000 });
        break;
      } catch (err) {
        // run again only when the cell was never queued (its prompt still "[ ]:"), never twice for a slow kernel
        const prompt = (await cell.locator(".jp-InputPrompt").innerText()).trim();
        if (attempt >= 3 || prompt !== "[ ]:") throw err;
        out.reruns = attempt;
      }
    }
    out.output = (await output.innerText()).trim();
  });
  out.loginToOutputMs = Date.now() - loginStarted;
  await step("screenshot", async () => {
    // answer JupyterLab's first-visit question about news (a toast over the notebook), as a user would
    const no = page.locator(".Toastify").getByRole("button", { name: "No", exact: true });
    if (await no.count()) {
      await no.first().click();
      await page.locator(".Toastify__toast").first().waitFor({ state: "detached", timeout: 5000 }).catch(() => {});
    }
    await page.screenshot({ path: artifact("lab.png") });
  });
}

async function main() {
  fs.mkdirSync(spec.artifacts, { recursive: true });
  // as root (the node tier runs as root) chromium refuses to start without --no-sandbox
  const browser = await chromium.launch({ executablePath: spec.chromium, args: ["--no-sandbox"] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    context.setDefaultTimeout(60000);
    page = await context.newPage();
    page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
    try {
      if (spec.mode === "lab") {
        await lab();
      } else {
        await login();
        out.profiles = await listProfiles();
        await step("screenshot", () => page.screenshot({ path: artifact("spawn-page.png") }));
      }
      out.ok = true;
    } catch (err) {
      out.error = String(err && err.stack ? err.stack : err);
      out.url = page.url();
      out.screenshot = artifact(`failed-${out.step}.png`);
      await page.screenshot({ path: out.screenshot, fullPage: true }).catch(() => {});
    }
  } finally {
    fs.writeFileSync(artifact("console.log"), consoleLines.join("\n") + "\n");
    await browser.close();
  }
}

main()
  .catch((err) => {
    out.error = String(err && err.stack ? err.stack : err);
  })
  .finally(() => {
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exitCode = out.ok ? 0 : 1;
  });
