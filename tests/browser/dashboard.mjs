// Drives the dashboard in a real browser (Debian's chromium through playwright-core) for
// tests/dashboard.rs: signs in with an admin key, waits for charts with data points, flips the
// cache switch off and on and watches /readyz follow, refuses a client key, and keeps
// screenshots at 1280 px and 390 px. Prints one JSON line of findings; exits 1 on any failure.
//
//   node dashboard.mjs BASE_URL ADMIN_KEY CLIENT_KEY OUT_DIR
import { checker, run } from "./harness.mjs";

const [base, adminKey, clientKey, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: node dashboard.mjs BASE_URL ADMIN_KEY CLIENT_KEY OUT_DIR");
  process.exit(2);
}
const found = {};

const check = checker(found);

async function readyz() {
  const res = await fetch(base + "/readyz", { headers: { Authorization: "Bearer " + adminKey } });
  return res.json();
}

async function until(what, probe, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("timed out waiting for " + what);
}

await run(found, async ({ browser, page, problems }) => {
  // Sign in.
  await page.goto(base + "/dashboard");
  check(await page.isVisible("#signin"), "the sign-in form shows before a key is given");
  await page.fill("#key", adminKey);
  await page.click("#signin-form button[type=submit]");

  // Charts with data points: the monitor samples every second in the test.
  await page.waitForFunction(() => {
    const charts = (window.sekishoDashboard || {}).charts || {};
    const t = charts.traffic;
    return t && t.data[0].length >= 3 && t.data[1].some((v) => v > 0);
  }, null, { timeout: 30000 });
  found.points = await page.evaluate(() => Object.fromEntries(Object.entries(window.sekishoDashboard.charts)
    .map(([name, u]) => [name, u.data.slice(1).map((s) => s.filter((v) => v !== null).length)])));
  check(found.points.traffic[0] >= 3, "the traffic chart has at least 3 points");
  check(found.points.latency[1] >= 1, "the latency chart has a p95 point");
  check(found.points.memory[0] >= 3, "the memory chart has gateway RSS points");
  check(found.points.cost[0] >= 3 && found.points.cost[1] >= 3, "the cost chart has spend and budget points");
  found.canvases = await page.locator("figure.chart canvas").count();
  check(found.canvases >= 6, "six charts are drawn (canvas elements)");
  found.tiles = await page.locator("#tiles .tile").allTextContents();
  found.upstreams = await page.locator("#upstreams tbody tr td:first-child").allTextContents();
  check(found.upstreams.length >= 1 && !found.upstreams[0].startsWith("No sample"), "the upstreams table has rows");
  await page.waitForSelector("#alerts li[data-state=firing]", { timeout: 20000 });
  found.alerts = await page.locator("#alerts li").allTextContents();

  // Flip the cache switch off: the button, the header pill and /readyz follow.
  const cache = page.locator('#switches button[data-layer="cache"]');
  check((await cache.textContent()) === "on", "the cache switch starts on");
  await cache.click();
  await page.waitForSelector('#switches button[data-layer="cache"][data-on="false"]', { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector("#ready").textContent.includes("off: cache"), null, { timeout: 10000 });
  found.readyz_off = await readyz();
  check((found.readyz_off.switched_off || []).includes("cache"), "/readyz names cache as switched off");
  found.pill_off = await page.textContent("#ready");

  await page.screenshot({ path: outDir + "/dashboard-1280.png", fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(600);
  found.overflow_390 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(found.overflow_390 <= 0, "no horizontal scrolling at 390 px");
  await page.screenshot({ path: outDir + "/dashboard-390.png", fullPage: true });

  // And back on.
  await page.locator('#switches button[data-layer="cache"]').click();
  await page.waitForSelector('#switches button[data-layer="cache"][data-on="true"]', { timeout: 10000 });
  found.readyz_on = await until("/readyz without switched_off", async () => {
    const r = await readyz();
    return (r.switched_off || []).length === 0 ? r : null;
  });

  found.problems = problems;
  check(problems.length === 0, "no console errors or CSP violations: " + problems.join(" | "));

  // A client key is refused and the page says so.
  const other = await browser.newPage();
  await other.goto(base + "/dashboard");
  await other.fill("#key", clientKey);
  await other.click("#signin-form button[type=submit]");
  await other.waitForFunction(() => document.querySelector("#signin-error").textContent.includes("not an admin key"), null, { timeout: 10000 });
  found.client_refused = await other.textContent("#signin-error");
  check(await other.isHidden("#board"), "the board stays hidden for a client key");
});
