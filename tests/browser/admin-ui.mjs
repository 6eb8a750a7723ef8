// Drives the real Socket.IO Admin UI in headless Chromium (Debian's, never a downloaded
// one) with playwright-core for tests/admin_ui.rs. Reads one JSON command per line on
// stdin, answers each with {"req", "ok": true} or {"req", "error"} on stdout:
//   {"req":1,"op":"open","page":"p","url":"http://127.0.0.1:9464/ui/"}  (its own context:
//      no localStorage shared with the other pages)
//   {"req":2,"op":"fill","page":"p","label":"Username","value":"ops"}
//   {"req":3,"op":"click","page":"p","button":"Connect"}
//   {"req":4,"op":"route","page":"p","hash":"#/sockets/"}
//   {"req":5,"op":"waitText","page":"p","text":"chat:x"}
//   {"req":6,"op":"clickInRow","page":"p","text":"<socket id>"}   (the row's button)
//   {"req":7,"op":"screenshot","page":"p","path":"/tmp/ui.png"}
//   {"req":8,"op":"loadFont","page":"p","font":"24px Roboto"}  (answers {"value": how many
//      font faces loaded}; an error if one failed to load)
//   {"req":9,"op":"external","page":"p"}  (answers {"value": [the URLs the page requested
//      from hosts other than loopback]})
// Exits (closing the browser) when stdin closes.
//
//   node tests/browser/admin-ui.mjs <chromium-path>
import { createInterface } from "node:readline";
import { launch, out } from "./chromium.mjs";

const [executablePath] = process.argv.slice(2);
const TIMEOUT = 60000;

const browser = await launch(executablePath);
const pages = new Map();
// Per page: the URLs it requested from hosts other than loopback.
const external = new Map();
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

const ops = {
  async open({ page: name, url }) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("pageerror", (err) => out({ type: "pageerror", page: name, message: String(err) }));
    pages.set(name, page);
    external.set(name, []);
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.protocol !== "data:" && !LOOPBACK.has(url.hostname)) external.get(name).push(url.href);
    });
    await page.goto(url);
  },
  fill: ({ page, label, value }) => pages.get(page).getByLabel(label, { exact: true }).fill(value),
  click: ({ page, button }) =>
    pages.get(page).getByRole("button", { name: button, exact: true }).click(),
  route: ({ page, hash }) => pages.get(page).evaluate((h) => { location.hash = h; }, hash),
  waitText: ({ page, text }) =>
    pages.get(page).getByText(text, { exact: true }).first().waitFor({ timeout: TIMEOUT }),
  clickInRow: ({ page, text }) =>
    pages.get(page).locator("tr", { hasText: text }).getByRole("button").first()
      .click({ timeout: TIMEOUT }),
  screenshot: ({ page, path }) => pages.get(page).screenshot({ path, animations: "disabled" }),
  loadFont: ({ page, font }) =>
    pages.get(page).evaluate(async (f) => (await document.fonts.load(f)).length, font),
  external: ({ page }) => external.get(page),
};

createInterface({ input: process.stdin }).on("line", async (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  try {
    const value = await ops[command.op](command);
    out({ req: command.req, ok: true, value });
  } catch (err) {
    out({ req: command.req, error: String(err && err.message) });
  }
}).on("close", async () => {
  await browser.close();
  process.exit(0);
});
