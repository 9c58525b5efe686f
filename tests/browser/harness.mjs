// What the browser scripts of tests/dashboard.rs share: Debian's chromium (CHROMIUM, else
// /usr/bin/chromium) launched through playwright-core, and a 1280x900 page that collects its
// problems — console errors, page errors, and failed loads outside /admin/ (a missing admin
// endpoint, such as recommendations when they are off, answers 404, which the page shows as
// "not available" and chromium logs as a failed load).
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

/** A check that throws naming `what` and the findings so far (`found`). */
export function checker(found) {
  return (condition, what) => {
    if (!condition) throw new Error("check failed: " + what + "\nfound so far: " + JSON.stringify(found));
  };
}
