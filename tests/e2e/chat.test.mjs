// End-to-end scenarios of the web client against a real server process:
// chorusd from CHORUS_BIN, or tests/e2e/mock-server.mjs without it.
// Run: cd tests/e2e && npm ci && CHORUS_BIN=/path/to/chorusd npm test
// Screenshots go to tests/e2e/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, restLogin, restPost, usingMock } from './lib/server.mjs';
import {
  launch, signIn, shot, channelItem, channelId, openChannel, domSeqs, titleCount,
} from './lib/browser.mjs';

const WINDOW_MAX = 300;
const WAIT = { timeout: 10000 };

let server;
let browser;
const sessions = [];

before(async () => {
  if (usingMock()) console.log('# CHORUS_BIN is not set: testing against tests/e2e/mock-server.mjs');
  server = await new Server().start();
  browser = await launch();
});

after(async () => {
  for (const s of sessions) await s.context.close().catch(() => {});
  await browser?.close();
  await server?.stop();
});

async function user(handle, opts) {
  const s = await signIn(browser, server.url, handle, opts);
  sessions.push(s);
  return s;
}

async function done(...list) {
  for (const s of list) {
    await s.context.close();
    sessions.splice(sessions.indexOf(s), 1);
  }
}

function assertNoErrors(s, ignore = []) {
  const errors = s.errors.filter((e) => !ignore.some((re) => re.test(e)));
  assert.deepEqual(errors, [], `console errors in ${s.handle}'s page`);
}

const unique = (text) => `${text} ${Math.random().toString(36).slice(2, 8)}`;

function msgRow(page, text) {
  return page.locator('#msg-list .msg', { has: page.locator('.msg-body', { hasText: text }) });
}

test('login screen', async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('input[name=tenant]', 'demo');
  await page.fill('input[name=handle]', 'alice');
  await page.fill('input[name=password]', 'wrong-password');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  await shot(page, 'login-error');
  await context.close();
});

test('a) alice and bob chat in #general in real time', async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  await openChannel(alice.page, 'general');
  await openChannel(bob.page, 'general');

  const hello = unique('Hello Bob, from Alice');
  await alice.page.fill('#composer-input', hello);
  await alice.page.keyboard.press('Enter');
  // appears at once (pending or already confirmed), then confirmed with a seq
  await msgRow(alice.page, hello).waitFor(WAIT);
  await alice.page.locator('#msg-list .msg[data-seq]', { hasText: hello }).waitFor(WAIT);
  await msgRow(bob.page, hello).waitFor({ timeout: 5000 });

  const reply = unique('Hi Alice! @alice');
  await bob.page.fill('#composer-input', 'Hi Alice! @ali');
  await bob.page.waitForSelector('#completions:not([hidden]) .completion', WAIT);
  await bob.page.keyboard.press('Tab');
  assert.match(await bob.page.inputValue('#composer-input'), /^Hi Alice! @alice $/);
  await bob.page.fill('#composer-input', reply);
  await bob.page.keyboard.press('Enter');
  await msgRow(alice.page, reply).waitFor({ timeout: 5000 });
  await alice.page.locator('#msg-list .msg .mention.me', { hasText: '@alice' }).last().waitFor(WAIT);

  // markup in a body is text, never HTML
  const markup = unique('<img src=x onerror="window.__pwned=1"><b>bold?</b>');
  await bob.page.fill('#composer-input', markup);
  await bob.page.keyboard.press('Enter');
  await alice.page.locator('#msg-list .msg-body', { hasText: markup }).waitFor(WAIT);
  assert.equal(await alice.page.locator('#msg-list img, #msg-list b').count(), 0);
  assert.equal(await alice.page.evaluate(() => window.__pwned), undefined);

  // typing indicator
  await alice.page.fill('#composer-input', 'typing something');
  await alice.page.keyboard.type('…');
  await bob.page.waitForFunction(() => /is typing/.test(document.querySelector('#typing').textContent), null, WAIT);

  // Shift+Enter makes a new line, Enter sends
  await alice.page.fill('#composer-input', '');
  await alice.page.keyboard.type('line one');
  await alice.page.keyboard.press('Shift+Enter');
  await alice.page.keyboard.type('line two');
  assert.equal(await alice.page.inputValue('#composer-input'), 'line one\nline two');
  await alice.page.keyboard.press('Enter');
  await msgRow(bob.page, 'line one\nline two').waitFor(WAIT);

  // edit, then delete, own message
  const row = alice.page.locator('#msg-list .msg[data-seq]', { hasText: hello });
  await row.hover();
  await row.getByRole('button', { name: 'Edit' }).click();
  await alice.page.fill('.edit-input', `${hello} (fixed)`);
  await alice.page.keyboard.press('Enter');
  await bob.page.locator('#msg-list .msg', { hasText: `${hello} (fixed)` }).locator('.edited').waitFor(WAIT);

  await shot(alice.page, 'a-alice-general');
  await shot(bob.page, 'a-bob-general');

  const line = alice.page.locator('#msg-list .msg[data-seq]', { hasText: 'line two' });
  await line.hover();
  await line.getByRole('button', { name: 'Delete' }).click();
  await alice.page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await bob.page.locator('#msg-list .msg.deleted').last().waitFor(WAIT);

  assertNoErrors(alice);
  assertNoErrors(bob);
  await done(alice, bob);
});

test('b) bob replies privately to alice; alice sees the DM with the quote', async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  await openChannel(alice.page, 'general');
  await openChannel(bob.page, 'general');
  const original = unique('Who can review the release notes?');
  await alice.page.fill('#composer-input', original);
  await alice.page.keyboard.press('Enter');

  const row = bob.page.locator('#msg-list .msg[data-seq]', { hasText: original });
  await row.waitFor(WAIT);
  await row.hover();
  await row.getByRole('button', { name: 'Reply privately' }).click();
  await bob.page.locator('#quote-bar:not([hidden])', { hasText: original }).waitFor(WAIT);
  assert.match(await bob.page.locator('#chan-title').textContent(), /Alice/);
  await shot(bob.page, 'b-bob-reply-privately');

  const answer = unique('I can, after lunch');
  await bob.page.fill('#composer-input', answer);
  await bob.page.keyboard.press('Enter');
  await bob.page.locator('#msg-list .msg[data-seq]', { hasText: answer }).locator('.msg-ref', { hasText: original }).waitFor(WAIT);

  // alice: the DM with bob gets a badge, and shows the quote
  const dm = alice.page.locator('.chan-item[data-type=dm]', { hasText: 'Bob' });
  await dm.locator('.badge').waitFor(WAIT);
  await dm.click();
  const received = alice.page.locator('#msg-list .msg[data-seq]', { hasText: answer });
  await received.waitFor(WAIT);
  const quote = received.locator('.msg-ref');
  assert.match(await quote.textContent(), new RegExp(original.replace(/[?]/g, '\\?')));
  assert.match(await quote.textContent(), /Alice/);
  await shot(alice.page, 'b-alice-dm-with-quote');

  // the quote links back to the original, opened around its seq
  await quote.click();
  await alice.page.locator('#msg-list .msg.target', { hasText: original }).waitFor(WAIT);
  assert.match(await alice.page.locator('#chan-title').textContent(), /general/);
  await shot(alice.page, 'b-alice-original-from-quote');

  assertNoErrors(alice);
  assertNoErrors(bob);
  await done(alice, bob);
});

test('c) endless scroll back reaches the first message, in order, without duplicates', async () => {
  const alice = await user('alice', { viewport: { width: 1000, height: 700 } });
  await openChannel(alice.page, 'general');
  const ch = await channelId(alice.page, 'general');

  // the demo history should be long; top it up to 1,000 messages if needed
  const headOf = () => alice.page.evaluate((id) => window.chorus.store.channel(id).head, ch);
  let head = await headOf();
  if (head < 1000) {
    const { token } = await restLogin(server.url, 'carol');
    for (let i = head + 1; i <= 1000; i++) await restPost(server.url, token, ch, `Filler message ${i}`);
    await alice.page.reload();
    await openChannel(alice.page, 'general');
    head = await headOf();
  }
  assert.ok(head >= 1000, `#general has ${head} messages`);

  const seen = new Set();
  let previousFirst = Infinity;
  let jumps = 0;
  for (let round = 0; round < 200; round++) {
    const seqs = await domSeqs(alice.page);
    assert.ok(seqs.length <= WINDOW_MAX, `DOM holds ${seqs.length} messages`);
    assert.equal(new Set(seqs).size, seqs.length, 'a seq twice in the DOM');
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `DOM seqs not contiguous at ${seqs[i - 1]}`);
    for (const s of seqs) seen.add(s);
    assert.ok(seqs[0] <= previousFirst, 'scrolling up went forward');
    previousFirst = seqs[0];
    if (seqs[0] === 1) break;

    // scroll to the top; the first message on screen must not move when older ones come in
    const before = await alice.page.evaluate(() => {
      const sc = document.getElementById('scroller');
      sc.scrollTop = 0;
      const first = document.querySelector('#msg-list .msg[data-seq]');
      return { seq: Number(first.dataset.seq), top: first.getBoundingClientRect().top };
    });
    await alice.page.waitForFunction((s) => Number(document.querySelector('#msg-list .msg[data-seq]').dataset.seq) < s,
      before.seq, WAIT);
    await alice.page.waitForTimeout(50);
    const afterTop = await alice.page.evaluate((s) => document.querySelector(`#msg-list .msg[data-seq="${s}"]`)
      ?.getBoundingClientRect().top, before.seq);
    if (afterTop === undefined || Math.abs(afterTop - before.top) > 2) jumps++;
  }
  assert.equal(previousFirst, 1, 'did not reach the first message');
  assert.equal(jumps, 0, 'the view jumped while loading older messages');
  for (let s = 1; s <= head; s++) assert.ok(seen.has(s), `seq ${s} never shown`);
  await alice.page.locator('.channel-intro').waitFor(WAIT);
  await shot(alice.page, 'c-scrolled-to-first-message');

  // scrolling down again re-fetches what was dropped from the DOM, without gaps
  let last = 0;
  for (let round = 0; round < 20 && last < 400; round++) {
    const seqs = await domSeqs(alice.page);
    assert.ok(seqs.length <= WINDOW_MAX, `DOM holds ${seqs.length} messages`);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, 'gap while scrolling down');
    last = seqs[seqs.length - 1];
    await alice.page.evaluate(() => {
      const sc = document.getElementById('scroller');
      sc.scrollTop = sc.scrollHeight;
    });
    await alice.page.waitForFunction((l) => {
      const all = document.querySelectorAll('#msg-list .msg[data-seq]');
      return Number(all[all.length - 1].dataset.seq) > l;
    }, last, WAIT);
  }
  assert.ok(last >= 400, 'scrolling down did not load newer messages');

  // a message arrives while alice reads old history: the button counts it
  const { token: carolToken } = await restLogin(server.url, 'carol');
  await restPost(server.url, carolToken, ch, unique('Fresh news while you scroll'));
  head += 1;
  await alice.page.locator('#jump-btn:not([hidden])', { hasText: '1 new message' }).waitFor(WAIT);

  // Jump to latest
  await alice.page.locator('#jump-btn:not([hidden])').click();
  await alice.page.waitForFunction((h) => [...document.querySelectorAll('#msg-list .msg[data-seq]')]
    .some((e) => Number(e.dataset.seq) === h), head, WAIT);
  const seqs = await domSeqs(alice.page);
  assert.ok(seqs.length <= WINDOW_MAX);
  await shot(alice.page, 'c-jumped-to-latest');
  assertNoErrors(alice);
  await done(alice);
});

test('d) server killed and restarted: messages sent meanwhile appear, pending sends go out once', async () => {
  const alice = await user('alice');
  await openChannel(alice.page, 'random');
  const ch = await channelId(alice.page, 'random');

  await server.kill('SIGKILL');
  await alice.page.locator('#conn-banner:not([hidden])', { hasText: /offline/i }).waitFor({ timeout: 60000 });
  const offlineText = unique('Sent while offline');
  await alice.page.fill('#composer-input', offlineText);
  await alice.page.keyboard.press('Enter');
  await alice.page.locator('#msg-list .msg.pending', { hasText: offlineText }).waitFor(WAIT);
  await shot(alice.page, 'd-offline-banner-and-pending');

  // keep alice's browser off the network while the server is back and bob
  // posts, so that these messages can only reach her by the catch-up
  await alice.context.setOffline(true);
  await server.start({ seed: false });
  const { token } = await restLogin(server.url, 'bob');
  const missed = [];
  for (let i = 1; i <= 3; i++) {
    missed.push(unique(`Missed message ${i}`));
    await restPost(server.url, token, ch, missed[i - 1]);
  }
  await alice.page.waitForTimeout(1000);
  assert.equal(await msgRow(alice.page, missed[0]).count(), 0, 'alice was not offline');
  await alice.context.setOffline(false);

  await alice.page.locator('#conn-banner').waitFor({ state: 'hidden', timeout: 60000 });
  for (const text of missed) await msgRow(alice.page, text).waitFor(WAIT);
  await alice.page.locator('#msg-list .msg[data-seq]', { hasText: offlineText }).waitFor(WAIT);
  await alice.page.waitForFunction(() => !document.querySelector('#msg-list .msg.pending'), null, WAIT);
  assert.equal(await msgRow(alice.page, offlineText).count(), 1, 'the offline message shows once');
  const seqs = await domSeqs(alice.page);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, 'gap or duplicate after reconnect');
  await shot(alice.page, 'd-after-reconnect');

  // a new client sees the offline message exactly once
  const bob = await user('bob');
  await openChannel(bob.page, 'random');
  await msgRow(bob.page, offlineText).waitFor(WAIT);
  assert.equal(await msgRow(bob.page, offlineText).count(), 1);

  // the socket dropped without the server going away: events are missed, sync brings them
  await alice.page.evaluate(() => window.chorus.conn.ws.close());
  const afterDrop = unique('Sent across a dropped socket');
  await restPost(server.url, token, ch, afterDrop);
  await msgRow(alice.page, afterDrop).waitFor(WAIT);

  assertNoErrors(alice, [/WebSocket connection to .* failed/, /ERR_CONNECTION_REFUSED/, /ERR_INTERNET_DISCONNECTED/]);
  assertNoErrors(bob);
  await done(alice, bob);
});

test('d2) a lost live event is noticed from the seq gap and fetched', async () => {
  const alice = await user('alice');
  await openChannel(alice.page, 'random');
  const ch = await channelId(alice.page, 'random');
  // lose the next message event of #random, as a full queue on the way would
  await alice.page.evaluate((id) => {
    const sync = window.chorus.sync;
    const deliver = sync.onEvent.bind(sync);
    let dropped = false;
    sync.onEvent = (ev) => {
      if (!dropped && ev.ev === 'message' && ev.ch === id) {
        dropped = true;
        return;
      }
      deliver(ev);
    };
  }, ch);
  const { token } = await restLogin(server.url, 'bob');
  const lost = unique('This event is lost');
  const next = unique('This one arrives');
  await restPost(server.url, token, ch, lost);
  await restPost(server.url, token, ch, next);
  await msgRow(alice.page, next).waitFor(WAIT);
  await msgRow(alice.page, lost).waitFor(WAIT);
  const seqs = await domSeqs(alice.page);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, 'gap left in the view');
  const order = await alice.page.$$eval('#msg-list .msg-body', (els) => els.map((e) => e.textContent));
  assert.ok(order.indexOf(lost) < order.indexOf(next), 'out of order');

  // a body over 40,000 characters is refused before it is sent
  await alice.page.fill('#composer-input', 'x'.repeat(40001));
  await alice.page.keyboard.press('Enter');
  await alice.page.locator('#composer-error', { hasText: 'too long' }).waitFor(WAIT);
  assert.equal(await alice.page.locator('#msg-list .msg.pending').count(), 0);
  await alice.page.fill('#composer-input', '');
  assertNoErrors(alice);
  await done(alice);
});

test('d3) unanswered sends are retried with the same client_msg_id, then shown as failed with Retry', async () => {
  const alice = await user('alice');
  await openChannel(alice.page, 'random');
  // the server "never answers" a send: as if each reply were lost
  await alice.page.evaluate(() => {
    const conn = window.chorus.conn;
    const real = conn.request.bind(conn);
    window.__sentIds = [];
    window.__blackhole = true;
    conn.request = (op, fields, opts) => {
      if (op === 'send') {
        window.__sentIds.push(fields.client_msg_id);
        if (window.__blackhole) return Promise.reject(Object.assign(new Error('no reply'), { code: 'timeout', retriable: true }));
      }
      return real(op, fields, opts);
    };
  });
  const text = unique('Will this ever arrive?');
  await alice.page.fill('#composer-input', text);
  await alice.page.keyboard.press('Enter');
  const failed = alice.page.locator('#msg-list .msg.failed', { hasText: text });
  await failed.waitFor({ timeout: 30000 });
  await shot(alice.page, 'd3-failed-send');
  await alice.page.evaluate(() => { window.__blackhole = false; });
  await failed.getByRole('button', { name: 'Retry' }).click();
  await alice.page.locator('#msg-list .msg[data-seq]', { hasText: text }).waitFor(WAIT);
  const ids = await alice.page.evaluate(() => window.__sentIds);
  assert.ok(ids.length >= 3, `only ${ids.length} attempts`);
  assert.equal(new Set(ids).size, 1, 'a retry used another client_msg_id');
  assert.equal(await msgRow(alice.page, text).count(), 1);
  assertNoErrors(alice);
  await done(alice);
});

test('e) an unread badge appears for another channel and clears on opening it, on every device', async () => {
  const alice = await user('alice');
  const alice2 = await user('alice'); // the same person on a second device
  await openChannel(alice.page, 'general');
  await openChannel(alice2.page, 'general');
  const random = await channelId(alice.page, 'random');
  const { token } = await restLogin(server.url, 'bob');
  const baseTitle = titleCount(await alice.page.title());
  const badge = async (page) => Number(await channelItem(page, 'random').locator('.badge').textContent({ timeout: 100 })
    .catch(() => '0'));
  const baseBadge = await badge(alice.page);

  await restPost(server.url, token, random, unique('Anyone up for lunch?'));
  await restPost(server.url, token, random, unique('Pizza place on the corner'));
  for (const s of [alice, alice2]) {
    await channelItem(s.page, 'random').locator('.badge', { hasText: String(baseBadge + 2) }).waitFor(WAIT);
  }
  assert.equal(titleCount(await alice.page.title()), baseTitle + 2);
  assert.equal(await channelItem(alice.page, 'random').locator('.badge').count(), 1);
  await shot(alice.page, 'e-unread-badge');

  await openChannel(alice.page, 'random');
  await channelItem(alice.page, 'random').locator('.badge').waitFor({ state: 'detached', ...WAIT });
  // the other device clears at once, from the read event
  await channelItem(alice2.page, 'random').locator('.badge').waitFor({ state: 'detached', ...WAIT });
  assert.equal(titleCount(await alice.page.title()), baseTitle - baseBadge);
  await shot(alice.page, 'e-badge-cleared');
  assertNoErrors(alice);
  assertNoErrors(alice2);
  await done(alice, alice2);
});

test('f) a muted channel does not notify; an unmuted conversation does', async () => {
  const alice = await user('alice', { fakeNotifications: true });
  const { token } = await restLogin(server.url, 'bob');

  // open (or create) the DM with bob through the dialog
  await alice.page.click('#new-dm-btn');
  await alice.page.getByRole('dialog').locator('label', { hasText: '@bob' }).locator('input').check();
  await alice.page.getByRole('dialog').getByRole('button', { name: 'Open conversation' }).click();
  await alice.page.waitForSelector('.chan-item.current[data-type=dm]');
  const dm = Number(await alice.page.getAttribute('.chan-item.current', 'data-ch'));

  // mute #random
  await openChannel(alice.page, 'random');
  const random = await channelId(alice.page, 'random');
  await alice.page.click('#settings-btn');
  await alice.page.getByRole('dialog').getByLabel(/^Mute/).check();
  await channelItem(alice.page, 'random').and(alice.page.locator('.muted')).waitFor(WAIT);
  await alice.page.keyboard.press('Escape');
  await alice.page.getByRole('dialog').waitFor({ state: 'detached' });

  await openChannel(alice.page, 'general');
  await alice.page.evaluate(() => window.__setHidden(true));
  const base = titleCount(await alice.page.title());

  await restPost(server.url, token, random, unique('Muted chatter'));
  await channelItem(alice.page, 'random').locator('.badge').waitFor(WAIT); // still counted in the sidebar
  await alice.page.waitForTimeout(1500);
  assert.equal(titleCount(await alice.page.title()), base, 'a muted channel raised the title count');
  assert.equal((await alice.page.evaluate(() => window.__notifications)).length, 0, 'a muted channel notified');
  await shot(alice.page, 'f-muted-channel-no-notification');

  const ping = unique('Are you there?');
  await restPost(server.url, token, dm, ping);
  await alice.page.waitForFunction((text) => window.__notifications.some((n) => n.body === text), ping, WAIT);
  await alice.page.waitForFunction((b) => /^\((\d+)\)/.exec(document.title)?.[1] > b, base, WAIT);
  await alice.page.evaluate(() => window.__setHidden(false));
  await shot(alice.page, 'f-dm-notified-title-badge');

  // unmute again for the other tests
  await openChannel(alice.page, 'random');
  await alice.page.click('#settings-btn');
  await alice.page.getByRole('dialog').getByLabel(/^Mute/).uncheck();
  await channelItem(alice.page, 'random').and(alice.page.locator('.muted')).waitFor({ state: 'detached', ...WAIT });
  await alice.page.keyboard.press('Escape');
  assertNoErrors(alice);
  await done(alice);
});

test('g) small screens and keyboard: the sidebar folds away, dialogs close with Escape', async () => {
  const bob = await user('bob', { viewport: { width: 375, height: 740 } });
  await bob.page.waitForSelector('#msg-list .msg[data-seq]');
  assert.equal(await bob.page.locator('#sidebar').isVisible(), false);
  await shot(bob.page, 'g-mobile-375');
  await bob.page.click('#menu-btn');
  await bob.page.locator('#sidebar').waitFor({ state: 'visible' });
  await bob.page.waitForTimeout(300); // slide-in transition
  await shot(bob.page, 'g-mobile-375-sidebar');
  await bob.page.keyboard.press('Escape');
  await bob.page.locator('#sidebar').waitFor({ state: 'hidden' });

  await bob.page.click('#menu-btn');
  await bob.page.click('#browse-btn');
  await bob.page.getByRole('dialog').waitFor();
  await shot(bob.page, 'g-mobile-375-browse');
  await bob.page.keyboard.press('Escape');
  await bob.page.getByRole('dialog').waitFor({ state: 'detached' });

  // the quick switcher, from the keyboard only
  await bob.page.setViewportSize({ width: 1200, height: 800 });
  await bob.page.keyboard.press('Control+k');
  await bob.page.getByRole('dialog').waitFor();
  await bob.page.keyboard.type('rand');
  await shot(bob.page, 'g-quick-switcher');
  await bob.page.keyboard.press('Enter');
  await bob.page.getByRole('dialog').waitFor({ state: 'detached' });
  await channelItem(bob.page, 'random').and(bob.page.locator('.current')).waitFor(WAIT);
  assert.equal(await bob.page.evaluate(() => document.activeElement.id), 'composer-input');

  // create a channel from the keyboard only
  await bob.page.focus('#add-channel-btn');
  await bob.page.keyboard.press('Enter');
  const name = `e2e-${Date.now().toString(36)}`;
  await bob.page.keyboard.type(name);
  await bob.page.keyboard.press('Enter');
  await channelItem(bob.page, name).and(bob.page.locator('.current')).waitFor(WAIT);
  assertNoErrors(bob);
  await done(bob);
});

test('h) create public and private channels; others browse and join the public one only', async () => {
  const bob = await user('bob');
  const stamp = Date.now().toString(36);
  for (const [name, isPrivate] of [[`open-${stamp}`, false], [`secret-${stamp}`, true]]) {
    await bob.page.click('#add-channel-btn');
    const dialog = bob.page.getByRole('dialog');
    await dialog.getByLabel('Name').fill(name);
    if (isPrivate) await dialog.getByRole('checkbox').check();
    await dialog.getByRole('button', { name: 'Create' }).click();
    await channelItem(bob.page, name).and(bob.page.locator('.current')).waitFor(WAIT);
  }
  assert.equal(await channelItem(bob.page, `secret-${stamp}`).getAttribute('data-type'), 'private');

  await openChannel(bob.page, `open-${stamp}`);
  const dave = await user('dave');
  await dave.page.click('#browse-btn');
  const dialog = dave.page.getByRole('dialog');
  await dialog.getByRole('searchbox').fill(stamp);
  const row = dialog.locator('.pick-row', { hasText: `#open-${stamp}` });
  await row.waitFor(WAIT);
  assert.equal(await dialog.locator('.pick-row', { hasText: `secret-${stamp}` }).count(), 0, 'a private channel is listed');
  await shot(dave.page, 'h-browse-channels');
  await row.getByRole('button', { name: 'Join' }).click();
  await channelItem(dave.page, `open-${stamp}`).and(dave.page.locator('.current')).waitFor(WAIT);
  const hello = unique('Dave joined the party');
  await dave.page.fill('#composer-input', hello);
  await dave.page.keyboard.press('Enter');
  await msgRow(bob.page, hello).waitFor(WAIT);
  assertNoErrors(bob);
  assertNoErrors(dave);
  await done(bob, dave);
});
