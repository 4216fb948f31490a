// Opens a report in headless Chromium (Debian's package, driven by playwright-core) and prints, as JSON,
// what the browser drew for the timeline: each step bar's data-step and rendered width (getBBox).
// Usage: node tests/helpers/svg_probe.mjs /path/to/report.html
import { chromium } from "playwright-core";

const path = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const requests = [];
  page.on("request", (r) => { if (!r.url().startsWith("file:")) requests.push(r.url()); });
  await page.goto("file://" + path);
  const bars = await page.$$eval("#timeline rect.bar", (rects) =>
    rects.map((r) => ({ step: r.dataset.step, width: r.getBBox().width, x: r.getBBox().x })));
  const svg = await page.$eval("#timeline", (s) => ({ width: s.getBoundingClientRect().width,
                                                     height: s.getBoundingClientRect().height }));
  const audit = await page.$eval("#audit", (e) => e.textContent.trim());
  console.log(JSON.stringify({ bars, svg, audit, requests }));
} finally {
  await browser.close();
}
