// Debian's chromium driven by playwright-core, one context per user.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SHOTS = path.resolve(HERE, '../screenshots');

export async function launch() {
  fs.mkdirSync(SHOTS, { recursive: true });
  // chromium.launch gives every run a fresh temporary profile
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Replaces the Notification API by a recorder and lets a test say the tab is
// hidden: headless pages are always "visible" and cannot show notifications.
function fakeDesktop() {
  window.__notifications = [];
  window.__hidden = false;
  window.__setHidden = (hidden) => {
    window.__hidden = hidden;
    document.dispatchEvent(new Event('visibilitychange'));
  };
  Object.defineProperty(Document.prototype, 'visibilityState', { get: () => (window.__hidden ? 'hidden' : 'visible'), configurable: true });
  Object.defineProperty(Document.prototype, 'hidden', { get: () => window.__hidden, configurable: true });
  class FakeNotification extends EventTarget {
    static permission = 'granted';
    static requestPermission() { return Promise.resolve('granted'); }
    constructor(title, options = {}) {
      super();
      window.__notifications.push({ title, body: options.body, tag: options.tag });
    }
    close() {}
  }
  window.Notification = FakeNotification;
}

// A signed-in user in their own browser context. errors collects console
// errors and uncaught exceptions.
export async function signIn(browser, base, handle, { viewport = { width: 1200, height: 800 }, fakeNotifications = false } = {}) {
  const context = await browser.newContext({ viewport });
  if (fakeNotifications) await context.addInitScript(fakeDesktop);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/`);
  await page.fill('input[name=tenant]', 'demo');
  await page.fill('input[name=handle]', handle);
  await page.fill('input[name=password]', 'chorus-demo');
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden]) .chan-item', { state: 'attached', timeout: 15000 });
  return { context, page, errors, handle };
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

// The sidebar item of a channel by name (channels) or title (DMs)
export function channelItem(page, name) {
  return page.locator('.chan-item', { has: page.locator('.chan-name', { hasText: new RegExp(`^${name}$`) }) });
}

export async function channelId(page, name) {
  return Number(await channelItem(page, name).getAttribute('data-ch'));
}

export async function openChannel(page, name) {
  await channelItem(page, name).click();
  await page.waitForSelector('#msg-list .msg[data-seq], .channel-intro', { timeout: 10000 });
  await page.waitForFunction(() => !document.querySelector('#top-status')?.textContent.includes('Loading messages'));
}

// seqs of the message rows in the DOM, in DOM order
export function domSeqs(page) {
  return page.$$eval('#msg-list .msg[data-seq]', (els) => els.map((e) => Number(e.dataset.seq)));
}

export function titleCount(title) {
  const m = /^\((\d+)\)/.exec(title);
  return m ? Number(m[1]) : 0;
}
