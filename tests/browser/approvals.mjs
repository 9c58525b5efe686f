// Drives the dashboard's "Calls awaiting approval" panel in a real browser (Debian's chromium
// through playwright-core) for tests/dashboard.rs, which holds the calls: signs in with an admin
// key, and for each held call the test starts, waits (no reload) for its row, reads what the
// row shows and clicks its button: approve the first, deny the second, read then deny the third
// (its argument holds markup that must stay text). Prints `step NAME` lines as it goes, so the
// test knows when to start the next call and check the last one's answer, then one JSON line of
// findings; exits 1 on any failure.
//
//   node approvals.mjs BASE_URL ADMIN_KEY
import { checker, run } from "./harness.mjs";

const [base, adminKey] = process.argv.slice(2);
if (!adminKey) {
  console.error("usage: node approvals.mjs BASE_URL ADMIN_KEY");
  process.exit(2);
}
// Generous: the panel polls every 5 s and the machine may be shared and slow.
const WAIT_MS = 45000;
const found = {};

const check = checker(found);

function step(name) {
  console.log("step " + name);
}

await run(found, async ({ page, problems }) => {
  // CSP violations, as the page itself sees them (added through the debugger, not the page).
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
  });

  await page.goto(base + "/dashboard");
  await page.fill("#key", adminKey);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#approvals li.empty", { timeout: WAIT_MS });
  found.empty = await page.textContent("#approvals li.empty");
  step("signed-in");

  // Wait, without reloading, for the row of the held call whose arguments contain `marker`;
  // what it shows.
  async function heldRow(marker) {
    const handle = await page.waitForFunction((m) => {
      for (const li of document.querySelectorAll("#approvals li[data-id]")) {
        const detail = li.querySelector(".detail");
        if (detail && detail.textContent.includes(m)) return li.dataset.id;
      }
      return null;
    }, marker, { timeout: WAIT_MS });
    const id = await handle.jsonValue();
    const row = page.locator(`#approvals li[data-id="${id}"]`);
    return {
      id,
      tool: await row.locator("strong").textContent(),
      by: await row.locator("span.muted").textContent(),
      arguments: await row.locator(".detail").textContent(),
      buttons: await row.locator("button").allTextContents(),
    };
  }

  // Click `verb` on row `id` and wait until the row is gone.
  async function decide(id, verb) {
    const row = `#approvals li[data-id="${id}"]`;
    await page.locator(row + " button", { hasText: new RegExp("^" + verb + "$") }).click({ timeout: WAIT_MS });
    await page.waitForSelector(row, { state: "detached", timeout: WAIT_MS });
  }

  found.approved = await heldRow("approve me");
  check(found.approved.buttons.includes("approve") && found.approved.buttons.includes("deny"), "the row has approve and deny buttons");
  await decide(found.approved.id, "approve");
  step("approved");

  found.denied = await heldRow("deny me");
  await decide(found.denied.id, "deny");
  step("denied");

  // Found by its plain marker, so markup rendered as HTML is caught by the checks below.
  found.markup = await heldRow("markup row");
  found.markup_dom = await page.evaluate(() => ({
    images: document.querySelectorAll("img").length,
    with_onerror: document.querySelectorAll("[onerror]").length,
    elements_in_detail: document.querySelectorAll("#approvals .detail *").length,
    xss: window.__xss === undefined ? null : String(window.__xss),
  }));
  await decide(found.markup.id, "deny");
  step("markup-denied");

  found.list_after = await page.locator("#approvals li").allTextContents();
  found.violations = await page.evaluate(() => window.__violations);
  found.problems = problems;
  check(found.markup_dom.images === 0 && found.markup_dom.with_onerror === 0 && found.markup_dom.elements_in_detail === 0,
    "the argument's markup made no element");
  check(found.markup_dom.xss === null, "the argument's handler never ran");
  check(found.violations.length === 0, "no CSP violation: " + found.violations.join(" | "));
  check(problems.length === 0, "no console errors: " + problems.join(" | "));
});
