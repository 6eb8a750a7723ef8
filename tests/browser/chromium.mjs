// Headless Chromium for the browser drivers (drive.mjs, admin-ui.mjs): Debian's, never a
// downloaded one, on loopback only, and one JSON object per line on stdout.
import { chromium } from "playwright-core";

export const out = (message) => process.stdout.write(JSON.stringify(message) + "\n");

// Starts Chromium at `executablePath` and reports its version.
export async function launch(executablePath) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      // The test may run as root in a container, where Chromium's sandbox cannot start.
      "--no-sandbox",
      // Loopback only: no name resolves except localhost, no background traffic.
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
      "--no-proxy-server",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--disable-extensions",
      "--no-first-run",
      "--metrics-recording-only",
    ],
  });
  out({ type: "browser", version: browser.version() });
  return browser;
}
