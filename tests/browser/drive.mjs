// Drives a real headless Chromium (Debian's, never a downloaded one) with playwright-core
// for tests/browser.rs: opens each page URL given on the command line in its own tab and
// writes, one JSON object per line on stdout, whatever the pages report through
// window.report, plus page errors. Reads commands on stdin, one JSON object per line:
// {"op":"offline"} / {"op":"online"} take every page off the network or back (DevTools
// network emulation: new requests fail, open WebSockets hold their frames, the pages get
// the `offline` / `online` event), then report {"type":"offline"} / {"type":"online"}.
// Exits (closing the browser) when stdin closes.
//
//   node tests/browser/drive.mjs <chromium-path> <page-url>...
import { createInterface } from "node:readline";
import { launch, out } from "./chromium.mjs";

const [executablePath, ...pages] = process.argv.slice(2);

const browser = await launch(executablePath);
const context = await browser.newContext();
await context.exposeFunction("report", (json) => process.stdout.write(json + "\n"));
for (const url of pages) {
  const page = await context.newPage();
  page.on("pageerror", (err) => out({ type: "pageerror", url, message: String(err) }));
  page.on("console", (msg) => {
    if (msg.type() === "error") out({ type: "console", url, text: msg.text() });
  });
  await page.goto(url);
}
out({ type: "ready" });

const commands = createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const { op } = JSON.parse(line);
  if (op !== "offline" && op !== "online") {
    out({ type: "pageerror", message: `unknown driver command ${line}` });
    return;
  }
  await context.setOffline(op === "offline");
  out({ type: op });
});
commands.on("close", async () => {
  await browser.close();
  process.exit(0);
});
