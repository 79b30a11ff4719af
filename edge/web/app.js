// Chorus web client: the login screen, then the chat, wiring the modules:
//   conn.js     WebSocket, reconnection       store.js   state
//   sync.js     catch-up, gaps, history        outbox.js  pending sends
//   view.js     timeline                       composer.js, sidebar.js
//   notify.js   notifications and title        dialogs.js

import { $, h } from './dom.js';
import { login, loadSession, saveSession, clearSession } from './api.js';
import { Connection } from './conn.js';
import { Store } from './store.js';
import { Outbox } from './outbox.js';
import { Sync } from './sync.js';
import { MessageView } from './view.js';
import { Composer } from './composer.js';
import { Sidebar } from './sidebar.js';
import { Notifier } from './notify.js';
import {
  createChannelDialog, browseDialog, dmDialog, settingsDialog, confirmDialog, switcherDialog,
} from './dialogs.js';
import { userName } from './format.js';
import { icon } from './icons.js';

const session = loadSession();
if (session) startChat(session);
else {
  showLogin(sessionStorage.getItem('chorus.notice') || '');
  sessionStorage.removeItem('chorus.notice');
}

// ---------------------------------------------------------------- login

function showLogin(notice = '') {
  $('#app').hidden = true;
  $('#login').hidden = false;
  const form = $('#login-form');
  const error = $('#login-error');
  error.textContent = notice;
  const last = localStorage.getItem('chorus.lastTenant');
  if (last && !form.tenant.value) form.tenant.value = last;
  (form.tenant.value ? form.handle : form.tenant).focus();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const s = await login(form.tenant.value.trim(), form.handle.value.trim(), form.password.value);
      saveSession(s);
      localStorage.setItem('chorus.lastTenant', form.tenant.value.trim());
      form.password.value = '';
      $('#login').hidden = true;
      startChat(s);
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- chat

function startChat({ token, user, tenant }) {
  $('#login').hidden = true;
  $('#app').hidden = false;
  const prefix = `chorus.${tenant.id}.${user.id}`;

  const store = new Store();
  store.setSession(user, tenant);
  const conn = new Connection(token);
  let sync = null;
  const outbox = new Outbox(conn, `${prefix}.outbox`, (item, reply) => sync.acked(item, reply));
  let current = null; // open channel id

  const notifier = new Notifier(store, { open: (ch) => openChannel(ch) });
  sync = new Sync(conn, store, outbox, {
    notify: (msg, c) => notifier.notify(msg, c),
    announce: (msg) => view.announce(msg),
  });

  const view = new MessageView({
    scroller: $('#scroller'), list: $('#msg-list'), topStatus: $('#top-status'),
    jumpBtn: $('#jump-btn'), jumpLabel: $('#jump-label'), live: $('#live'), typing: $('#typing'),
  }, store, outbox, {
    loadOlder: () => sync.loadOlder(),
    loadNewer: () => sync.loadNewer(),
    jumpLatest,
    markRead: (ch, seq) => sync.markRead(ch, seq),
    replyPrivately,
    edit: (msg, body) => request('edit', { ch: msg.ch, seq: msg.seq, body }),
    remove: removeMessage,
    retry: (cmid) => outbox.retry(cmid),
    discard: (cmid) => outbox.discard(cmid),
    openRef,
    connected: () => conn.ready,
    focusComposer: () => composer.focus(),
  });

  const composer = new Composer({
    form: $('#composer'), input: $('#composer-input'), quoteBar: $('#quote-bar'), completions: $('#completions'),
    error: $('#composer-error'),
  }, store, {
    send: (ch, body, quote) => {
      outbox.add(ch, body, quote);
      view.scrollToBottom();
    },
    typing: (ch) => { if (conn.ready) conn.request('typing', { ch }).catch(() => {}); },
    editLast: () => view.editLast(),
    candidates: (ch) => store.members.get(ch) || [...store.users.values()],
  });

  const sidebar = new Sidebar({ channels: $('#channel-list'), dms: $('#dm-list') }, store, {
    open: (ch) => openChannel(ch),
  });

  // ------------------------------------------------ header, banner, sidebar chrome

  $('#ws-name').textContent = tenant.name;
  $('#me-name').textContent = `${userName(user)} · @${user.handle}`;
  $('#logout-btn').addEventListener('click', logout);
  $('#add-channel-btn').addEventListener('click', () => createChannelDialog(async (name, isPrivate) => {
    const { channel } = await request('channel_create', { name, private: isPrivate });
    store.upsertChannel(channel);
    return () => openChannel(channel.id);
  }));
  $('#browse-btn').addEventListener('click', () => browseDialog(
    async () => (await request('channel_browse')).channels,
    async (id) => {
      const { channel } = await request('channel_join', { ch: id });
      store.upsertChannel(channel);
      return () => openChannel(id);
    },
    (id) => openChannel(id),
  ));
  $('#new-dm-btn').addEventListener('click', () => dmDialog(
    [...store.users.values()].filter((u) => u.id !== user.id).sort((a, b) => a.handle.localeCompare(b.handle)),
    async (ids) => {
      const dm = await openDm(ids);
      return () => openChannel(dm.id);
    },
  ));
  $('#settings-btn').addEventListener('click', openSettings);
  $('#join-btn').addEventListener('click', async () => {
    const w = store.win;
    if (!w) return;
    const { channel } = await request('channel_join', { ch: w.ch });
    store.upsertChannel(channel);
    openChannel(channel.id);
  });

  const menuBtn = $('#menu-btn');
  const setSidebar = (open) => {
    document.body.classList.toggle('sidebar-open', open);
    menuBtn.setAttribute('aria-expanded', String(open));
    $('#scrim').hidden = !open;
    if (open) $('#sidebar').querySelector('button')?.focus();
  };
  menuBtn.addEventListener('click', () => setSidebar(!document.body.classList.contains('sidebar-open')));
  $('#scrim').addEventListener('click', () => setSidebar(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.body.classList.contains('sidebar-open')) {
      setSidebar(false);
      menuBtn.focus();
    } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k' && !document.querySelector('dialog[open]')) {
      e.preventDefault();
      openSwitcher();
    }
  });
  $('#switcher-btn').addEventListener('click', openSwitcher);

  function openSwitcher() {
    const items = store.order.map((id) => store.channel(id)).filter(Boolean).map((c) => ({
      id: c.id, label: store.isDirect(c) ? store.channelTitle(c) : c.name,
      kind: store.isDirect(c) ? 'direct' : 'channel', unread: c.muted ? 0 : c.unread,
    }));
    switcherDialog(items, (id) => openChannel(id));
  }

  const notifPrompt = $('#notif-prompt');
  notifPrompt.hidden = !notifier.needsPermission();
  $('#notif-btn').addEventListener('click', async () => {
    await notifier.askPermission();
    notifPrompt.hidden = !notifier.needsPermission();
  });

  const banner = $('#conn-banner');
  let bannerTimer = null;
  conn.addEventListener('status', (e) => {
    const { state, retryAt } = e.detail;
    clearInterval(bannerTimer);
    document.body.classList.toggle('offline', state !== 'online');
    if (state === 'online') {
      banner.hidden = true;
      view.schedule(); // pending rows: "Sending…" again
      return;
    }
    if (state === 'connecting' && banner.hidden) return; // a quick first connect: no banner
    const paint = () => {
      const secs = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
      banner.replaceChildren(
        h('span', {}, state === 'connecting' ? 'Offline — reconnecting…'
          : `Offline — reconnecting${secs ? ` in ${secs} s` : ''}…`),
        ' ',
        h('button', { type: 'button', class: 'link-btn', onclick: () => conn.reconnectNow() }, 'Retry now'));
    };
    paint();
    banner.hidden = false;
    if (retryAt) bannerTimer = setInterval(paint, 1000);
    view.schedule();
  });
  conn.addEventListener('authfail', () => {
    clearSession();
    sessionStorage.setItem('chorus.notice', 'Your session has ended. Please sign in again.');
    location.reload();
  });

  store.addEventListener('channels', () => {
    renderHeader();
    if (current !== null && !store.channel(current) && !store.win?.preview) {
      current = null;
      openDefault();
    }
  });
  outbox.addEventListener('change', () => { if (conn.ready) outbox.pump(); });

  let firstSync = true;
  sync.addEventListener('synced', () => {
    if (firstSync) {
      firstSync = false;
      if (current === null) openDefault(); // unless the user was quicker
    }
  });

  conn.start();

  // ------------------------------------------------ actions

  function request(op, fields) {
    return conn.request(op, fields);
  }

  function openDefault() {
    const last = Number(localStorage.getItem(`${prefix}.last`));
    const ch = store.channel(last) ? last : store.order[0];
    if (ch !== undefined) openChannel(ch);
  }

  // opts: {around: seq} or {latest: true}
  function openChannel(ch, opts = {}, preview = null) {
    current = ch;
    sidebar.setCurrent(ch);
    setSidebar(false);
    if (!preview) localStorage.setItem(`${prefix}.last`, String(ch));
    sync.openChannel(ch, { ...opts, preview });
    const c = store.channel(ch);
    const title = c ? (store.isDirect(c) ? store.channelTitle(c) : `#${c.name}`) : `#${preview?.name}`;
    composer.setChannel(ch, { enabled: !preview, placeholder: `Message ${title}` });
    $('#join-bar').hidden = !preview;
    if (preview) $('#join-text').textContent = `You are viewing #${preview.name}.`;
    renderHeader();
    if (!preview && window.matchMedia('(min-width: 701px)').matches) composer.focus();
  }

  function renderHeader() {
    const w = store.win;
    const c = current !== null ? store.channel(current) : null;
    const preview = w?.preview;
    const title = $('#chan-title');
    if (!c && !preview) {
      title.textContent = '';
      $('#chan-meta').textContent = '';
      $('#settings-btn').hidden = true;
      notifier.setPlace('');
      return;
    }
    const direct = c && store.isDirect(c);
    const name = c ? (direct ? store.channelTitle(c) : c.name) : preview.name;
    title.replaceChildren(direct ? '' : h('span', { class: 'chan-prefix' }, c?.type === 'private' ? icon('lock', 18) : '#'), name);
    $('#chan-meta').textContent = c ? `${c.members} member${c.members === 1 ? '' : 's'}${c.muted ? ' · muted' : ''}` : 'Preview';
    $('#settings-btn').hidden = !c;
    notifier.setPlace(direct ? name : `#${name}`);
  }

  function jumpLatest() {
    const w = store.win;
    if (!w) return;
    if (w.hasMoreAfter) sync.openChannel(w.ch, { latest: true, preview: w.preview });
    else view.scrollToBottom();
  }

  async function openDm(ids) {
    const { channel } = await request('dm_open', { users: ids });
    return store.upsertChannel(channel);
  }

  // "Reply privately": open (or create) the DM with the author, quote the message
  async function replyPrivately(msg) {
    try {
      const dm = await openDm([msg.author]);
      composer.setQuote(dm.id, { ch: msg.ch, seq: msg.seq, author: msg.author, body: msg.body });
      openChannel(dm.id);
      composer.focus();
    } catch (err) {
      toast(`Could not open the conversation: ${err.message}`);
    }
  }

  async function openRef(ref) {
    if (store.channel(ref.ch)) {
      openChannel(ref.ch, { around: ref.seq });
      return;
    }
    try {
      const { channels } = await request('channel_browse');
      const c = channels.find((x) => x.id === ref.ch);
      if (!c) throw new Error('that channel is not visible to you');
      openChannel(ref.ch, { around: ref.seq }, { id: c.id, name: c.name, type: 'public', members: c.members });
    } catch (err) {
      toast(`Cannot open the original message: ${err.message}`);
    }
  }

  async function removeMessage(msg) {
    if (!await confirmDialog('Delete message', 'Delete this message for everyone? This cannot be undone.', 'Delete')) return;
    try {
      await request('delete', { ch: msg.ch, seq: msg.seq });
    } catch (err) {
      toast(`Not deleted: ${err.message}`);
    }
  }

  function openSettings() {
    const c = store.channel(current);
    if (!c) return;
    const title = store.isDirect(c) ? store.channelTitle(c) : `#${c.name}`;
    settingsDialog(title, c, !store.isDirect(c), async (changes) => {
      const { channel } = await request('channel_settings', { ch: c.id, ...changes });
      store.upsertChannel(channel);
    }, async () => {
      await request('channel_leave', { ch: c.id });
      store.removeChannel(c.id);
    });
  }

  async function logout() {
    try {
      await Promise.race([request('logout'), new Promise((r) => setTimeout(r, 2000))]);
    } catch { /* the token is forgotten here anyway */ }
    conn.stop();
    clearSession();
    localStorage.removeItem(`${prefix}.outbox`);
    location.reload();
  }

  function toast(text) {
    const t = h('div', { class: 'toast', role: 'status' }, text);
    document.body.append(t);
    setTimeout(() => t.remove(), 5000);
  }

  // For the end-to-end tests and for debugging from the console
  window.chorus = { store, conn, sync, outbox };
}
