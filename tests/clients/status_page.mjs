// Drives an aop status page in headless Chromium with playwright-core and prints, as one
// JSON document, what a person would see: the title, the readiness badge, the zones, the
// agents and their descriptions, the recent queries' request ids, and whether the page
// refreshed itself.
//
// Usage: node status_page.mjs PAGE_URL CHROMIUM_PATH
// playwright-core is resolved from $AOP_PLAYWRIGHT_DIR/node_modules (.ci/interop installs
// it there, pinned), since an ES module ignores NODE_PATH.
import { createRequire } from 'node:module';
import path from 'node:path';

const [url, executablePath] = process.argv.slice(2);
if (!url || !executablePath) {
  console.error('usage: node status_page.mjs PAGE_URL CHROMIUM_PATH');
  process.exit(2);
}
const modules = process.env.AOP_PLAYWRIGHT_DIR || path.join(process.cwd(), 'target/interop-node');
const require = createRequire(path.join(modules, 'package.json'));
const { chromium } = require('playwright-core');

const browser = await chromium.launch({ executablePath, headless: true });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.goto(url);
  await page.waitForSelector('body[data-loaded="true"] details.zone td.agent-name', {
    timeout: 15000,
  });
  const footer = () => document.getElementById('footer').textContent;
  const firstFooter = await page.evaluate(footer);
  // The page reads status.json again every 2 s.
  await page.waitForFunction((first) =>
    document.getElementById('footer').textContent !== first, firstFooter, { timeout: 10000 });
  const seen = await page.evaluate(() => {
    const texts = (selector) => [...document.querySelectorAll(selector)].map((n) => n.textContent);
    return {
      title: document.getElementById('title').textContent,
      state: document.getElementById('state').textContent,
      zones: [...document.querySelectorAll('details.zone')].map((d) => d.dataset.zone),
      agents: texts('td.agent-name'),
      descriptions: texts('td.description'),
      bold_elements: document.querySelectorAll('#zones b').length,
      request_ids: texts('td.request-id'),
      visible_text_length: document.body.innerText.length,
    };
  });
  seen.refreshed = true;
  seen.errors = errors;
  console.log(JSON.stringify(seen));
  if (errors.length > 0) process.exitCode = 1;
} finally {
  await browser.close();
}
