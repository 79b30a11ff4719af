// The message timeline of the open channel: grouping by author and day,
// the "New messages" divider, pending sends, inline editing, message
// actions, endless scroll both ways with the scroll position anchored to a
// message element, and "Jump to latest".
//
// Rows are keyed ('d:<day>', 'n', 'm:<seq>', 'p:<client_msg_id>') and
// reconciled, so a new message adds one element instead of rebuilding 300.

import { h, clear } from './dom.js';
import { icon } from './icons.js';
import { userName, initials, hue, formatTime, formatFull, formatDay, dayKey } from './format.js';

const GROUP_GAP_MS = 5 * 60 * 1000; // same author within 5 minutes: one group
const BOTTOM_SLACK_PX = 40;

export class MessageView {
  // els: {scroller, list, topStatus, jumpBtn, jumpLabel, live, typing}
  // actions: {loadOlder, loadNewer, jumpLatest, markRead, replyPrivately,
  //           edit, remove, retry, discard, openRef, connected}
  constructor(els, store, outbox, actions) {
    this.els = els;
    this.store = store;
    this.outbox = outbox;
    this.actions = actions;
    this.rows = new Map();
    this.winId = null;
    this.needInitialScroll = false;
    this.editing = null; // seq being edited
    this.scheduled = false;
    this.announced = '';

    store.addEventListener('window', () => this.schedule());
    store.addEventListener('typing', () => this.renderTyping());
    store.addEventListener('channels', () => requestAnimationFrame(() => this.onScroll())); // unread count on the jump button
    outbox.addEventListener('change', (e) => { if (e.detail.ch === store.win?.ch) this.schedule(); });
    els.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    els.scroller.addEventListener('keydown', (e) => this.onKey(e));
    els.jumpBtn.addEventListener('click', () => this.actions.jumpLatest());
    document.addEventListener('visibilitychange', () => this.onScroll());
    window.addEventListener('resize', () => this.onScroll());
  }

  // Coalesce many store changes (a sync page) into one render per frame
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.render();
    });
  }

  // ---------------------------------------------------------------- rendering

  render() {
    const w = this.store.win;
    const { list } = this.els;
    if (!w) {
      clear(list);
      this.rows.clear();
      return;
    }
    if (w.id !== this.winId) {
      clear(list);
      this.rows.clear();
      this.winId = w.id;
      this.editing = null;
      this.needInitialScroll = true;
      this.renderTyping();
    }
    const anchor = this.needInitialScroll ? null : this.captureAnchor();
    this.reconcile(this.buildRows(w));
    this.renderTopStatus(w);
    if (this.needInitialScroll && !w.loading) {
      this.needInitialScroll = false;
      this.initialScroll(w);
    } else if (anchor) {
      this.restoreAnchor(anchor);
    }
    if (this.editing !== null) {
      const ta = this.rows.get(`m:${this.editing}`)?.querySelector('textarea');
      if (ta && document.activeElement !== ta) {
        ta.focus();
        ta.setSelectionRange(ta.value.length, ta.value.length);
      }
    }
    requestAnimationFrame(() => this.onScroll());
  }

  buildRows(w) {
    const rows = [];
    const me = this.store.me.id;
    let prev = null;
    let dividerDone = w.dividerAfter === null;
    const push = (row) => rows.push(row);
    const groupWith = (author, ts, hasRef) => prev && !hasRef && prev.author === author && !prev.deleted
      && dayKey(prev.ts) === dayKey(ts) && ts - prev.ts < GROUP_GAP_MS;

    for (const msg of w.msgs) {
      let breakGroup = false;
      if (!prev || dayKey(prev.ts) !== dayKey(msg.ts)) {
        push({ key: `d:${dayKey(msg.ts)}`, kind: 'day', ts: msg.ts });
        breakGroup = true;
      }
      if (!dividerDone && msg.seq > w.dividerAfter && msg.author !== me && !msg.deleted) {
        dividerDone = true;
        if (msg !== w.msgs[0] || w.hasMoreBefore || w.dividerAfter > 0) {
          push({ key: 'n', kind: 'divider' });
          breakGroup = true;
        }
      }
      const cont = !breakGroup && !msg.deleted && groupWith(msg.author, msg.ts, !!msg.ref);
      const editing = this.editing === msg.seq;
      push({ key: `m:${msg.seq}`, kind: 'msg', msg, cont, sig: `${cont}|${editing}` });
      prev = msg;
    }
    if (!w.loading && !w.hasMoreAfter) {
      const connected = this.actions.connected();
      // the message event can come before the ack: show it once
      const stored = new Set(w.msgs.slice(-50).filter((m) => m.author === me).map((m) => m.client_msg_id));
      for (const item of this.outbox.forChannel(w.ch)) {
        if (stored.has(item.cmid)) continue;
        const ts = item.ts;
        if (!prev || dayKey(prev.ts) !== dayKey(ts)) push({ key: `d:${dayKey(ts)}`, kind: 'day', ts });
        const cont = groupWith(me, ts, !!item.quote);
        push({ key: `p:${item.cmid}`, kind: 'pending', item, cont, sig: `${cont}|${item.state}|${item.error}|${connected}` });
        prev = { author: me, ts };
      }
    }
    return rows;
  }

  reconcile(rows) {
    const { list } = this.els;
    const wanted = new Set(rows.map((r) => r.key));
    for (const [key, el] of this.rows) {
      if (!wanted.has(key)) {
        el.remove();
        this.rows.delete(key);
      }
    }
    let prevEl = null;
    for (const row of rows) {
      let el = this.rows.get(row.key);
      if (el && (el._msg !== row.msg || el._sig !== row.sig || el._item !== row.item)) {
        const fresh = this.buildRow(row);
        el.replaceWith(fresh);
        el = fresh;
        this.rows.set(row.key, el);
      }
      if (!el) {
        el = this.buildRow(row);
        this.rows.set(row.key, el);
      }
      const expected = prevEl ? prevEl.nextSibling : list.firstChild;
      if (el !== expected) list.insertBefore(el, expected);
      prevEl = el;
    }
  }

  buildRow(row) {
    let el;
    if (row.kind === 'day') {
      el = h('div', { class: 'day-sep', role: 'separator' },
        h('span', { class: 'day-label' }, formatDay(row.ts)));
    } else if (row.kind === 'divider') {
      el = h('div', { class: 'new-divider', role: 'separator', 'aria-label': 'New messages' },
        h('span', {}, 'New messages'));
    } else if (row.kind === 'msg') {
      el = this.buildMessage(row.msg, row.cont);
    } else {
      el = this.buildPending(row.item, row.cont);
    }
    el._msg = row.msg;
    el._sig = row.sig;
    el._item = row.item;
    return el;
  }

  buildMessage(msg, cont) {
    const s = this.store;
    const author = s.user(msg.author);
    const name = userName(author, msg.author);
    const mine = msg.author === s.me.id;
    const w = s.win;
    const el = h('div', {
      class: `msg${cont ? ' cont' : ''}${mine ? ' mine' : ''}${msg.deleted ? ' deleted' : ''}${w.target === msg.seq ? ' target' : ''}`,
      role: 'listitem', tabindex: '-1', dataset: { seq: msg.seq }, 'aria-label': `${name}, ${formatFull(msg.ts)}`,
    });
    el.append(this.gutter(msg.author, name, msg.ts, cont));
    const main = h('div', { class: 'msg-main' });
    if (!cont) main.append(this.head(name, msg.ts));
    if (msg.ref) main.append(this.quote(msg.ref));
    if (msg.deleted) {
      main.append(h('div', { class: 'msg-body muted-text' }, 'This message was deleted.'));
    } else if (this.editing === msg.seq) {
      main.append(this.editor(msg));
    } else {
      const body = h('div', { class: 'msg-body' }, this.richText(msg.body));
      if (msg.edited_ts) body.append(' ', h('span', { class: 'edited', title: `Edited ${formatFull(msg.edited_ts)}` }, '(edited)'));
      main.append(body);
    }
    el.append(main);
    if (!msg.deleted && this.editing !== msg.seq) el.append(this.toolbar(msg, mine));
    return el;
  }

  buildPending(item, cont) {
    const s = this.store;
    const name = userName(s.me);
    const failed = item.state === 'failed';
    const el = h('div', {
      class: `msg mine pending${cont ? ' cont' : ''}${failed ? ' failed' : ''}`,
      role: 'listitem', dataset: { cmid: item.cmid },
    });
    el.append(this.gutter(s.me.id, name, item.ts, cont));
    const main = h('div', { class: 'msg-main' });
    if (!cont) main.append(this.head(name, item.ts));
    if (item.quote) main.append(this.quote(item.quote));
    main.append(h('div', { class: 'msg-body' }, this.richText(item.body)));
    if (failed) {
      main.append(h('div', { class: 'msg-status error', role: 'alert' },
        `Not sent: ${item.error || 'error'}. `,
        h('button', { type: 'button', class: 'link-btn', onclick: () => this.actions.retry(item.cmid) }, 'Retry'),
        ' · ',
        h('button', { type: 'button', class: 'link-btn', onclick: () => this.actions.discard(item.cmid) }, 'Discard')));
    } else {
      main.append(h('div', { class: 'msg-status' },
        this.actions.connected() ? 'Sending…' : 'Waiting for connection — will send when back online'));
    }
    el.append(main);
    return el;
  }

  gutter(uid, name, ts, cont) {
    if (cont) {
      return h('div', { class: 'msg-gutter' },
        h('time', { class: 'gutter-time', datetime: new Date(ts).toISOString(), title: formatFull(ts) }, formatTime(ts)));
    }
    return h('div', { class: 'msg-gutter' }, avatar(uid, name));
  }

  head(name, ts) {
    return h('div', { class: 'msg-head' },
      h('span', { class: 'msg-author' }, name),
      h('time', { class: 'msg-time', datetime: new Date(ts).toISOString(), title: formatFull(ts) }, formatTime(ts)));
  }

  quote(ref) {
    const s = this.store;
    const author = userName(s.user(ref.author), ref.author);
    const c = s.channel(ref.ch);
    const where = c ? (s.isDirect(c) ? s.channelTitle(c) : `#${c.name}`) : 'a channel';
    return h('button', {
      type: 'button', class: 'msg-ref', title: 'Open the original message',
      onclick: () => this.actions.openRef(ref),
    },
    h('span', { class: 'ref-head' }, h('strong', {}, author), ` in ${where}`),
    h('span', { class: 'ref-body' }, ref.body || 'This message was deleted.'));
  }

  toolbar(msg, mine) {
    const s = this.store;
    const w = s.win;
    const c = s.channel(w.ch) || w.preview;
    const bar = h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' });
    const btn = (label, iconName, onclick) => h('button', {
      type: 'button', class: 'icon-btn', title: label, 'aria-label': label, tabindex: '-1', onclick,
    }, icon(iconName, 16));
    if (!mine && c && !s.isDirect(c)) bar.append(btn('Reply privately', 'reply', () => this.actions.replyPrivately(msg)));
    if (mine) {
      bar.append(btn('Edit', 'edit', () => this.startEdit(msg.seq)));
      bar.append(btn('Delete', 'trash', () => this.actions.remove(msg)));
    }
    return bar.childElementCount ? bar : h('span');
  }

  editor(msg) {
    const ta = h('textarea', { class: 'edit-input', rows: 2, 'aria-label': 'Edit message' });
    ta.value = msg.body;
    const save = () => {
      const body = ta.value.trim();
      this.editing = null;
      if (body && body !== msg.body) this.actions.edit(msg, body);
      this.schedule();
      this.actions.focusComposer();
    };
    const cancel = () => {
      this.editing = null;
      this.schedule();
      this.actions.focusComposer();
    };
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
      else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); cancel(); }
    });
    return h('div', { class: 'editor' }, ta,
      h('div', { class: 'editor-hint' }, 'Enter to save · Escape to cancel ',
        h('button', { type: 'button', class: 'link-btn', onclick: save }, 'Save'), ' ',
        h('button', { type: 'button', class: 'link-btn', onclick: cancel }, 'Cancel')));
  }

  startEdit(seq) {
    this.editing = seq;
    this.schedule();
  }

  // Edit the last message of mine in the window (Up in an empty composer)
  editLast() {
    const w = this.store.win;
    if (!w) return false;
    for (let i = w.msgs.length - 1; i >= 0; i--) {
      const m = w.msgs[i];
      if (m.author === this.store.me.id && !m.deleted) {
        this.startEdit(m.seq);
        return true;
      }
    }
    return false;
  }

  // Body text with @mentions and links; text nodes only
  richText(text) {
    const out = [];
    const me = this.store.me.handle;
    const re = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])|@([a-z0-9._-]+)/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1]) {
        out.push(h('a', { href: m[1], target: '_blank', rel: 'noopener noreferrer' }, m[1]));
      } else if (this.store.userByHandle(m[2])) {
        out.push(h('span', { class: `mention${m[2] === me ? ' me' : ''}` }, m[0]));
      } else {
        out.push(m[0]);
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  renderTopStatus(w) {
    const el = this.els.topStatus;
    clear(el);
    if (w.loading) el.append(h('div', { class: 'spinner-row' }, 'Loading messages…'));
    else if (w.error) el.append(h('div', { class: 'spinner-row error' }, `Could not load messages: ${w.error}`));
    else if (w.hasMoreBefore) el.append(h('div', { class: 'spinner-row' }, 'Loading older messages…'));
    else {
      const c = this.store.channel(w.ch) || w.preview;
      const title = c ? (this.store.isDirect(c) ? this.store.channelTitle(c) : `#${c.name}`) : '';
      el.append(h('div', { class: 'channel-intro' },
        h('h2', {}, title),
        h('p', {}, this.store.isDirect(c || {}) ? `This is the very beginning of your conversation with ${title}.`
          : `This is the very beginning of ${title}.`)));
    }
  }

  renderTyping() {
    const w = this.store.win;
    const el = this.els.typing;
    const ids = w ? this.store.typingIn(w.ch) : [];
    const names = ids.map((id) => userName(this.store.user(id), id));
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    el.textContent = text;
  }

  announce(msg) {
    const name = userName(this.store.user(msg.author), msg.author);
    this.els.live.textContent = `${name}: ${msg.body.slice(0, 140)}`;
  }

  // ---------------------------------------------------------------- scrolling

  distanceFromBottom() {
    const sc = this.els.scroller;
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight;
  }

  // The first message row visible at the top, and where it is on screen
  captureAnchor() {
    const w = this.store.win;
    if (w && w.pinned && this.distanceFromBottom() < BOTTOM_SLACK_PX) return { bottom: true };
    const top = this.els.scroller.getBoundingClientRect().top;
    for (const el of this.els.list.children) {
      if (!el.classList.contains('msg')) continue;
      const r = el.getBoundingClientRect();
      if (r.bottom > top) return { el, top: r.top };
    }
    return null;
  }

  restoreAnchor(anchor) {
    const sc = this.els.scroller;
    if (anchor.bottom) {
      sc.scrollTop = sc.scrollHeight;
    } else if (anchor.el.isConnected) {
      sc.scrollTop += anchor.el.getBoundingClientRect().top - anchor.top;
    }
  }

  initialScroll(w) {
    const sc = this.els.scroller;
    const target = w.mode === 'around' ? this.rows.get(`m:${w.target}`) : null;
    const divider = this.rows.get('n');
    if (target) {
      sc.scrollTop += target.getBoundingClientRect().top - sc.getBoundingClientRect().top - sc.clientHeight / 3;
      target.classList.add('flash');
    } else if (divider) {
      sc.scrollTop += divider.getBoundingClientRect().top - sc.getBoundingClientRect().top - 24;
    } else {
      sc.scrollTop = sc.scrollHeight;
    }
  }

  scrollToBottom() {
    this.els.scroller.scrollTop = this.els.scroller.scrollHeight;
    this.onScroll();
  }

  onScroll() {
    const w = this.store.win;
    if (!w || w.loading || w.id !== this.winId || this.needInitialScroll) {
      this.els.jumpBtn.hidden = true;
      this.store.liveReading = false;
      return;
    }
    const sc = this.els.scroller;
    const dist = this.distanceFromBottom();
    const edge = Math.max(600, sc.clientHeight);
    w.pinned = dist < BOTTOM_SLACK_PX && !w.hasMoreAfter;
    this.store.liveReading = w.pinned && document.visibilityState === 'visible';
    if (sc.scrollTop < edge && w.hasMoreBefore) this.actions.loadOlder();
    if (dist < edge && w.hasMoreAfter) this.actions.loadNewer();
    this.els.jumpBtn.hidden = !(w.hasMoreAfter || dist > sc.clientHeight);
    const unread = this.store.channel(w.ch)?.unread || 0;
    const label = unread ? `${unread >= 1000 ? '999+' : unread} new message${unread === 1 ? '' : 's'}` : 'Jump to latest';
    if (this.els.jumpLabel.textContent !== label) this.els.jumpLabel.textContent = label;
    this.markVisibleRead(w);
  }

  // Read up to the newest message on screen, when the page is visible
  markVisibleRead(w) {
    if (document.visibilityState !== 'visible' || !w.msgs.length) return;
    const bottom = this.els.scroller.getBoundingClientRect().bottom;
    const rows = this.els.list.children;
    for (let i = rows.length - 1; i >= 0; i--) {
      const el = rows[i];
      if (!el.dataset.seq) continue;
      if (el.getBoundingClientRect().top < bottom - 8) {
        this.actions.markRead(w.ch, Number(el.dataset.seq));
        return;
      }
    }
  }

  // Arrow keys move between messages; their actions are then reachable by Tab
  onKey(e) {
    if (e.target.tagName === 'TEXTAREA') return;
    if (e.key !== 'ArrowUp' && e.key !== 'ArrowDown') return;
    const msgs = [...this.els.list.querySelectorAll('.msg[data-seq]')];
    if (!msgs.length) return;
    const current = e.target.closest?.('.msg');
    let i = msgs.indexOf(current);
    if (i < 0) {
      const bottom = this.els.scroller.getBoundingClientRect().bottom;
      i = msgs.findLastIndex((m) => m.getBoundingClientRect().top < bottom) + (e.key === 'ArrowUp' ? 1 : 0);
    }
    const next = msgs[Math.max(0, Math.min(msgs.length - 1, i + (e.key === 'ArrowUp' ? -1 : 1)))];
    if (!next) return;
    e.preventDefault();
    for (const b of this.els.list.querySelectorAll('.msg-actions button[tabindex="0"]')) b.tabIndex = -1;
    for (const b of next.querySelectorAll('.msg-actions button')) b.tabIndex = 0;
    next.focus();
    next.scrollIntoView({ block: 'nearest' });
  }
}

export function avatar(uid, name, size = 36) {
  return h('span', {
    class: 'avatar', 'aria-hidden': 'true',
    style: `--hue:${hue(uid)};width:${size}px;height:${size}px;font-size:${Math.round(size * 0.4)}px`,
  }, initials(name));
}
