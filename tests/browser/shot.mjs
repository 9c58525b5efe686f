// Takes the README's dashboard screenshot of a running gateway (not a test):
//   node shot.mjs BASE_URL ADMIN_KEY OUT.png [WIDTH]
import { chromium } from "playwright-core";

const [base, key, out, width] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: Number(width || 1280), height: 900 } });
await page.goto(base + "/dashboard");
await page.fill("#key", key);
await page.click("#signin-form button[type=submit]");
await page.waitForFunction(() => (window.sekishoDashboard.charts.traffic || { data: [[]] }).data[0].length > 2, null, { timeout: 30000 });
await page.waitForTimeout(1000);
await page.screenshot({ path: out, fullPage: true });
await browser.close();
