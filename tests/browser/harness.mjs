// What the browser scripts of tests/dashboard.rs share: `run` (launch, run the script's body,
// close, print its findings, exit 0 or 1), Debian's chromium (CHROMIUM, else /usr/bin/chromium)
// launched through playwright-core, and a 1280x900 page that collects its problems — console
// errors, page errors, and failed loads outside /admin/ (a missing admin endpoint, such as
// recommendations when they are off, answers 404, which the page shows as "not available" and
// chromium logs as a failed load).
import { chromium } from "playwright-core";

/** The browser and a page on it, with `problems` (strings) filled as the page runs. */
export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 60000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400 && !new URL(r.url()).pathname.startsWith("/admin/")) problems.push(r.status() + " " + r.url()); });
  page.on("pageerror", (e) => problems.push(e.message));
  return { browser, page, problems };
}

/**
 * Launch, run `body({ browser, page, problems })`, close the browser, print `found` as one JSON
 * line and exit: 0, or 1 (with the error on stderr) when `body` threw.
 */
export async function run(found, body) {
  const opened = await launch();
  let failed = false;
  try {
    await body(opened);
  } catch (e) {
    failed = true;
    console.error(e.stack || String(e));
  } finally {
    await opened.browser.close();
  }
  console.log(JSON.stringify(found));
  process.exit(failed ? 1 : 0);
}

/** A check that throws naming `what` and the findings so far (`found`). */
export function checker(found) {
  return (condition, what) => {
    if (!condition) throw new Error("check failed: " + what + "\nfound so far: " + JSON.stringify(found));
  };
}
