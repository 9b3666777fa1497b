// The web page (src/serve/web/index.html) in a real headless Chromium against the real server, with a
// tiny model whose adapter is overfit on four question/SQL pairs, so the page must show exactly the
// trained SQL; with databases made by the test, the page runs it and shows its rows. Needs Debian's
// Chromium at /usr/bin/chromium (apt-get install chromium); without it the tests are skipped with a
// message. TEXT2SQL_SCREENSHOT=docs/screenshot.png also writes (atomically) the screenshot that the
// README shows.
import fs from "node:fs";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startServer, type RunningServer } from "../src/serve/server.js";
import { writeFileAtomic } from "../src/util/atomic.js";
import { tempDir } from "./helpers/models.js";
import { overfitAdapter, PAIRS, SCHEMA } from "./helpers/overfit.js";
import { HEADS, makeServeDatabases } from "./helpers/serve-dbs.js";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = fs.existsSync(CHROMIUM);
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const TOKEN = "s3cret-token";

if (!hasChromium) console.warn(`test/web.test.ts: skipped, ${CHROMIUM} is missing (install it with: apt-get install -y chromium)`);

describe.skipIf(!hasChromium)(`web page in Chromium${hasChromium ? "" : ` (skipped: ${CHROMIUM} is missing; apt-get install -y chromium)`}`, () => {
  let server: RunningServer | undefined;
  let tokenServer: RunningServer | undefined;
  let dbServer: RunningServer | undefined;
  let context: BrowserContext | undefined;
  let userDataDir: string | undefined;

  beforeAll(async () => {
    const { outputDir } = await overfitAdapter();
    const opts = { adapter: outputDir, host: "127.0.0.1", port: 0, device: "cpu" as const, threads: 1, log: () => {} };
    server = await startServer(opts);
    tokenServer = await startServer({ ...opts, token: TOKEN });
    const dbs = makeServeDatabases(tempDir("t2s-web-dbs-"));
    dbServer = await startServer({ ...opts, token: TOKEN, db: [dbs.school, dbs.runaway], candidates: 3, queryTimeoutMs: 500 });
    userDataDir = tempDir("t2s-chromium-");
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1000, height: 700 },
      colorScheme: "light",
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close().catch(() => {});
    await Promise.all([server?.close(), tokenServer?.close(), dbServer?.close()]);
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  });

  /** A fresh page that records dialogs, script errors and every request it makes. */
  async function openPage(url: string) {
    const page = await context!.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on("dialog", (d) => {
      problems.push(`dialog (${d.type()}): ${d.message()}`);
      void d.dismiss();
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of (400|401|413|503)/.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    page.on("request", (r) => requests.push(r.url()));
    const health = page.waitForResponse((r) => r.url() === `${url}/health`);
    await page.goto(url + "/");
    return { page, problems, requests, health };
  }

  /** Waits until `selector`'s text is `expected`, and says what it was when it is not. */
  async function waitText(page: Page, selector: string, expected: string | RegExp, timeout = 30_000) {
    try {
      await page.waitForFunction(
        ([sel, src, flags, exact]) => {
          const t = document.querySelector(sel)?.textContent ?? "";
          return exact !== null ? t === exact : new RegExp(src, flags).test(t);
        },
        typeof expected === "string" ? ([selector, "", "", expected] as const) : ([selector, expected.source, expected.flags, null] as const),
        { timeout },
      );
    } catch {
      const actual = await page.locator(selector).textContent();
      const error = await page.locator("#error").textContent();
      throw new Error(`${selector}: expected ${String(expected)}, found ${JSON.stringify(actual)} (page error box: ${JSON.stringify(error)})`);
    }
  }

  test("generates the trained SQL, checks it against a schema, shows errors and keeps a history", async () => {
    const { page, problems, requests, health } = await openPage(server!.url);
    expect(await page.title()).toBe("text2sql");
    await expect(page.getByLabel("Question").isVisible()).resolves.toBe(true);
    await expect(page.getByLabel(/^Schema/).isVisible()).resolves.toBe(true);
    expect(await page.locator("#token-row").isVisible()).toBe(false);
    // this server has no databases: no database select, no candidates
    expect((await health).status()).toBe(200);
    await page.waitForLoadState("networkidle");
    expect(await page.locator("#db-row").isVisible()).toBe(false);
    expect(await page.locator("#db").isDisabled()).toBe(true);
    // the checkbox sits next to its label, on one line
    const box = (await page.locator("#constrain").boundingBox())!;
    const label = (await page.locator("label.check").boundingBox())!;
    expect(box.width).toBeLessThan(24);
    expect(box.x - label.x).toBeLessThan(2);
    expect(label.height).toBeLessThan(30); // one line of 15px text at 1.5

    // 1. type, press Generate: busy while the request runs (held back here), then the exact SQL
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route("**/generate_sql", async (route) => {
      await held;
      await route.continue();
    });
    await page.getByLabel("Question").fill(PAIRS[0][0]);
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#generate", "Generating…");
    expect(await page.locator("#generate").getAttribute("aria-busy")).toBe("true");
    release();
    await waitText(page, "#sql", `${PAIRS[0][1]};`);
    await page.unroute("**/generate_sql");
    expect(await page.locator("#generate").getAttribute("aria-busy")).toBe("false");
    expect(await page.locator("#generate").textContent()).toBe("Generate");
    // highlighted: keywords, functions, identifiers and numbers are marked
    expect(await page.locator("#sql .kw").allTextContents()).toEqual(["SELECT", "FROM", "WHERE"]);
    expect(await page.locator("#sql .num").allTextContents()).toEqual(["56"]);
    expect(await page.locator("#sql .fn").allTextContents()).toEqual(["count"]);
    expect(await page.locator("#sql .id").allTextContents()).toEqual(["head", "age"]);
    expect(await page.locator("#ms").textContent()).toMatch(/^\d+ ms$/);
    expect(await page.locator("#validity").isVisible()).toBe(false); // no schema, no check

    // 2. with the schema, by Ctrl+Enter in the question box: valid
    await page.getByLabel(/^Schema/).fill(SCHEMA);
    await page.getByLabel("Question").fill(PAIRS[1][0]);
    expect(await page.getByLabel("Constrain the SQL to this schema").isChecked()).toBe(true);
    const sent = page.waitForRequest("**/generate_sql");
    await page.getByLabel("Question").press("Control+Enter");
    expect((await sent).postDataJSON()).toMatchObject({ schema: SCHEMA, constrain: true });
    await waitText(page, "#sql", `${PAIRS[1][1]};`);
    await waitText(page, "#validity", "✓ valid");
    expect(await page.locator("#validity").getAttribute("class")).toContain("ok");

    // 3. once more by the button with the schema (a string literal): valid, and the screenshot
    await page.getByLabel("Question").fill(PAIRS[2][0]);
    await page.getByLabel("Constrain the SQL to this schema").uncheck();
    const unconstrained = page.waitForRequest("**/generate_sql");
    await page.getByRole("button", { name: "Generate" }).click();
    expect((await unconstrained).postDataJSON()).toMatchObject({ constrain: false });
    await waitText(page, "#sql", `${PAIRS[2][1]};`);
    await waitText(page, "#validity", "✓ valid");
    expect(await page.locator("#sql .str").allTextContents()).toEqual(["'Texas'"]);

    // copy: the SQL reaches the clipboard (or the fallback) and the button says so
    await context!.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server!.url });
    await page.getByRole("button", { name: "Copy" }).click();
    await waitText(page, "#copy", "Copied");
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`${PAIRS[2][1]};`);

    // 4. an empty question: the server's 400 message, in the page
    const direct = await fetch(`${server!.url}/generate_sql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "", schema: SCHEMA }),
    });
    expect(direct.status).toBe(400);
    const { error } = (await direct.json()) as { error: string };
    expect(error).toMatch(/^question: /);
    await page.getByLabel("Question").fill("");
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", `${error} (HTTP 400)`);
    expect(await page.locator("#error").getAttribute("role")).toBe("alert");

    // 5. the history lists the earlier questions, newest first; clicking one restores it
    const items = page.locator("#history button");
    expect(await items.count()).toBe(3);
    expect(await items.locator(".q").allTextContents()).toEqual([PAIRS[2][0], PAIRS[1][0], PAIRS[0][0]]);
    await items.nth(2).click();
    expect(await page.getByLabel("Question").inputValue()).toBe(PAIRS[0][0]);
    expect(await page.getByLabel(/^Schema/).inputValue()).toBe("");
    await waitText(page, "#sql", `${PAIRS[0][1]};`);
    expect(await page.locator("#error").textContent()).toBe("");
    expect(await page.locator("#validity").isVisible()).toBe(false);

    // the page asks for nothing outside this server
    expect(requests.filter((u) => !u.startsWith(server!.url + "/"))).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });

  test("escapes the SQL it highlights and reports busy servers and network errors", async () => {
    const { page, problems } = await openPage(server!.url);
    const replies: Array<(route: import("playwright-core").Route) => Promise<void>> = [
      (r) =>
        r.fulfill({
          status: 200,
          contentType: "application/json",
          body: JSON.stringify({
            sql: `SELECT '<b>x</b>' AS "a&b" FROM t -- <img src=x onerror=alert(1)>`,
            valid: false,
            error: "no such table: t",
            ms: 12.3,
            rows: { columns: ["<b>c</b>", "n", "b"], rows: [["<img src=x onerror=alert(1)>", null, { blob: 3 }]], count: 1, truncated: false },
          }),
        }),
      (r) =>
        r.fulfill({
          status: 503,
          contentType: "application/json",
          headers: { "Retry-After": "2" },
          body: JSON.stringify({ error: "busy: 68 requests in flight or queued; retry shortly" }),
        }),
      (r) => r.abort("connectionrefused"),
    ];
    await page.route("**/generate_sql", (route) => replies.shift()!(route));
    await page.getByLabel("Question").fill("anything");

    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#sql", `SELECT '<b>x</b>' AS "a&b" FROM t -- <img src=x onerror=alert(1)>`);
    expect(await page.locator("#sql b, #sql img").count()).toBe(0);
    expect(await page.locator("#sql .str").allTextContents()).toEqual(["'<b>x</b>'"]);
    expect(await page.locator("#sql .id").allTextContents()).toEqual([`"a&b"`, "t"]);
    expect(await page.locator("#sql .cm").allTextContents()).toEqual(["-- <img src=x onerror=alert(1)>"]);
    await waitText(page, "#validity", "✗ invalid");
    expect(await page.locator("#verr").textContent()).toBe("SQLite: no such table: t");
    // the rows are text too
    expect(await page.locator("#rows th").allTextContents()).toEqual(["<b>c</b>", "n", "b"]);
    expect(await page.locator("#rows td").allTextContents()).toEqual(["<img src=x onerror=alert(1)>", "NULL", "<blob 3 bytes>"]);
    expect(await page.locator("#rows b, #rows img").count()).toBe(0);
    expect(await page.locator("#rows-count").textContent()).toBe("1 row");

    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", /^busy: 68 requests in flight or queued; retry shortly \(HTTP 503\)\nThe server is busy; try again in 2 s\.$/);

    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", /^Network error: could not reach the server/);
    expect(await page.locator("#generate").getAttribute("aria-busy")).toBe("false");
    expect(problems.filter((p) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(p))).toEqual([]);
    await page.close();
  });

  test("asks for the API token after a 401 and sends it from then on", async () => {
    const { page, problems } = await openPage(tokenServer!.url);
    await page.getByLabel("Question").fill(PAIRS[3][0]);
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", /\(HTTP 401\)\nEnter the API token below/);
    expect(await page.locator("#token-row").isVisible()).toBe(true);
    await page.getByLabel("API token").fill(TOKEN);
    await page.getByLabel("API token").press("Control+Enter");
    await waitText(page, "#sql", `${PAIRS[3][1]};`);
    expect(await page.locator("#error").textContent()).toBe("");
    expect(await page.evaluate(() => sessionStorage.getItem("text2sql.token"))).toBe(TOKEN);
    // a reload keeps the token (same tab) and the field stays shown
    await page.reload();
    expect(await page.locator("#token-row").isVisible()).toBe(true);
    expect(await page.getByLabel("API token").inputValue()).toBe(TOKEN);
    expect(await page.locator("#history .q").allTextContents()).toEqual([PAIRS[3][0]]);
    expect(problems).toEqual([]);
    await page.close();
  });

  test("with the server's databases: picks one and a candidate count, shows the SQL's rows and each error", async () => {
    const { page, problems, requests } = await openPage(dbServer!.url);
    // the server wants a token: until it is given, /health says nothing and no database is offered
    await page.waitForLoadState("networkidle");
    expect(await page.locator("#db-row").isVisible()).toBe(false);
    await page.getByLabel("Question").fill(PAIRS[1][0]);
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", /\(HTTP 401\)\nEnter the API token below/);
    const refetched = page.waitForResponse((r) => r.url() === `${dbServer!.url}/health` && r.status() === 200);
    await page.getByLabel("API token").fill(TOKEN);
    await refetched;
    await page.locator("#db-row").waitFor({ state: "visible" });
    expect(await page.locator("#db option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value))).toEqual(["", "school", "runaway"]);
    expect(await page.getByLabel("Candidates").getAttribute("max")).toBe("3");
    expect(await page.getByLabel("Candidates").inputValue()).toBe("3");
    expect(await page.locator("#candidates-max").textContent()).toBe("3");

    // 1. school, 2 candidates: the SQL and its first 20 rows of 30, a blob by its length
    await page.getByLabel("Database").selectOption("school");
    await page.getByLabel("Candidates").fill("2");
    const sent = page.waitForRequest("**/generate_sql");
    await page.getByRole("button", { name: "Generate" }).click();
    expect((await sent).postDataJSON()).toEqual({ question: PAIRS[1][0], db: "school", candidates: 2, constrain: true });
    await waitText(page, "#sql", `${PAIRS[1][1]};`);
    await waitText(page, "#rows-count", "first 20 of 30 rows");
    expect(await page.locator("#error").textContent()).toBe("");
    expect(await page.locator("#rows th").allTextContents()).toEqual(["name", "age"]);
    expect(await page.locator("#rows tbody tr").count()).toBe(20);
    const cells = await page.locator("#rows tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
    expect(cells).toEqual(HEADS.slice(0, 20).map(([name, age]) => [typeof name === "string" ? name : `<blob ${name.length} bytes>`, String(age)]));
    await waitText(page, "#validity", "✓ valid");
    const shot = process.env.TEXT2SQL_SCREENSHOT;
    if (shot) {
      await page.getByLabel("Question").blur();
      fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
      writeFileAtomic(path.resolve(shot), await page.screenshot({ fullPage: true }));
    }

    // 2. a query that runs past the server's limit: the SQL, and why there are no rows
    await page.getByLabel("Database").selectOption("runaway");
    await page.getByLabel("Candidates").fill("1");
    await page.getByLabel("Constrain the SQL to this schema").uncheck();
    await page.getByLabel("Question").fill(PAIRS[0][0]);
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(
      page,
      "#rows-error",
      "The query did not finish on runaway: the query ran longer than 500 ms (the server's query time limit); no rows to show.",
    );
    expect(await page.locator("#sql").textContent()).toBe(`${PAIRS[0][1]};`);
    expect(await page.locator("#rows-wrap").isVisible()).toBe(false);
    await waitText(page, "#validity", "✗ invalid");

    // 3. more candidates than the server runs: its 400 message
    await page.getByLabel("Candidates").fill("5");
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(page, "#error", "candidates: this server runs at most 3 per request (serve --candidates), got 5 (HTTP 400)");

    // 4. a schema over the body limit: the 413 message and what to do
    await page.getByLabel("Candidates").fill("1");
    await page.getByLabel(/^Schema/).fill("CREATE TABLE t (x INT); -- " + "x".repeat(70 * 1024));
    await page.getByRole("button", { name: "Generate" }).click();
    await waitText(
      page,
      "#error",
      "request body over 64 KiB (HTTP 413)\nThe question and schema are too large for this server; keep only the tables the question needs.",
    );

    // 5. restoring the school answer from the history selects its database again
    await page.getByLabel(/^Schema/).fill("");
    await page.locator("#history button").nth(1).click();
    expect(await page.getByLabel("Database").inputValue()).toBe("school");
    expect(await page.getByLabel("Question").inputValue()).toBe(PAIRS[1][0]);
    expect(await page.locator("#rows tbody tr").count()).toBe(20);

    expect(requests.filter((u) => !u.startsWith(dbServer!.url + "/"))).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });
});
