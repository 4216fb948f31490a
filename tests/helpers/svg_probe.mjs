// Opens a report in headless Chromium (Debian's package, driven by playwright-core) and prints, as JSON,
// what the browser drew for the timeline: each step bar's data-step and rendered width (getBBox), the tool
// start-up bands, the axis, and where the failure summary and the gaps sit on the page (above the fold or not).
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
  const bands = await page.$$eval("#timeline rect.band", (rects) =>
    rects.map((r) => ({ x: r.getBBox().x, width: r.getBBox().width, label: r.textContent.trim() })));
  const axis = await page.$eval("#timeline line.axis", (l) => ({ x1: Number(l.getAttribute("x1")),
                                                                 x2: Number(l.getAttribute("x2")) }));
  const failure = await page.$$eval("#failure", (found) => found.map((e) => ({
    text: e.textContent.replace(/\s+/g, " ").trim(), top: e.getBoundingClientRect().top,
    bottom: e.getBoundingClientRect().bottom })));
  const gaps = await page.$$eval("#gaps li", (items) => items.map((e) => e.textContent.trim()));
  const fold = await page.evaluate(() => window.innerHeight);
  console.log(JSON.stringify({ bars, svg, audit, requests, bands, axis, failure: failure[0] || null, gaps, fold }));
} finally {
  await browser.close();
}
