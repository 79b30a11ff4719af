// Keeps the store true to the server: the first load and the catch-up after
// every reconnection (sync from per-channel checkpoints), live events, gap
// filling when a live seq skips, history pages for the open channel, and
// read positions. The rule everywhere: the store is the truth, deliveries
// are best effort, seq numbers tell what is missing.

import { RequestError } from './conn.js';

const PAGE = 100;
const GAP_PAGES_OPEN = 20;   // pages fetched to fill a gap in the open channel
const GAP_PAGES_OTHER = 2;   // ... in a channel nobody looks at (counts only)
const SYNC_ROUNDS = 10;

export class Sync extends EventTarget {
  // hooks: {notify(msg, channel), announce(msg)}
  constructor(conn, store, outbox, hooks) {
    super();
    this.conn = conn;
    this.store = store;
    this.outbox = outbox;
    this.hooks = hooks;
    this.filling = new Map();   // ch -> 'again' flag while a gap fill runs
    this.reads = new Map();     // ch -> {sent, wanted, busy}
    this.refreshTimer = null;
    this.membersLoaded = new Set();
    conn.addEventListener('ready', () => this.onReady());
    conn.addEventListener('event', (e) => this.onEvent(e.detail));
  }

  req(op, fields) {
    return this.conn.request(op, fields);
  }

  // ---------------------------------------------------------------- (re)connection

  async onReady() {
    try {
      const [users, list] = await Promise.all([this.req('user_list'), this.req('channel_list')]);
      this.store.setUsers(users.users);
      this.store.setChannels(list.channels);
      await this.catchUp();
      const w = this.store.win;
      if (w && (w.loading || w.error)) this.reopen(w);
      this.membersLoaded.clear();
      if (w) this.loadMembers(w.ch);
      this.outbox.flush();
      this.dispatchEvent(new CustomEvent('synced'));
    } catch (err) {
      if (!(err instanceof RequestError) || err.code !== 'offline') console.warn('chorus: catch-up failed', err);
    }
  }

  // sync from our checkpoints until nothing is left, merging into the store
  async catchUp() {
    for (let round = 0; round < SYNC_ROUNDS; round++) {
      const checkpoints = {};
      for (const c of this.store.channels.values()) checkpoints[String(c.id)] = c.seen;
      const reply = await this.req('sync', { channels: checkpoints, limit: 200 });
      for (const id of reply.removed || []) this.store.removeChannel(id);
      let more = false;
      for (const part of reply.channels || []) {
        if (!this.store.channel(part.ch)) await this.refreshChannels(true);
        this.store.ingest(part.ch, part.messages);
        this.store.setCounts(part.ch, part);
        if (part.has_more) more = true;
      }
      if (!more) return;
    }
    // Still more: give up on completeness for the channels that are behind
    for (const c of this.store.channels.values()) if (c.seen < c.head) this.store.skipTo(c.id, c.head);
  }

  reopen(w) {
    if (w.preview) this.openChannel(w.ch, { around: w.target, preview: w.preview });
    else this.openChannel(w.ch, w.mode === 'around' ? { around: w.target } : { latest: w.mode === 'latest' });
  }

  async refreshChannels(now = false) {
    clearTimeout(this.refreshTimer);
    if (!now) {
      this.refreshTimer = setTimeout(() => this.refreshChannels(true), 300);
      return;
    }
    try {
      const list = await this.req('channel_list');
      this.store.setChannels(list.channels);
    } catch { /* next reconnect refreshes */ }
  }

  // ---------------------------------------------------------------- live events

  onEvent(ev) {
    const s = this.store;
    switch (ev.ev) {
      case 'message': {
        const { ev: _ev, notify, ...msg } = ev;
        const c = s.channel(msg.ch);
        if (!c) {
          this.refreshChannels();
          if (notify) this.hooks.notify(msg, null);
          return;
        }
        const isNew = msg.seq > c.seen;
        const { gap } = s.ingest(msg.ch, [msg]);
        s.clearTyping(msg.ch, msg.author);
        if (gap) this.fillGap(msg.ch);
        if (isNew && notify) this.hooks.notify(msg, c);
        if (isNew && s.win?.ch === msg.ch && msg.author !== s.me.id) this.hooks.announce(msg);
        break;
      }
      case 'message_edited':
        s.editMessage(ev.ch, ev.seq, { body: ev.body, edited_ts: ev.edited_ts });
        break;
      case 'message_deleted':
        s.editMessage(ev.ch, ev.seq, { deleted: true, body: '' });
        break;
      case 'read':
        s.setRead(ev.ch, ev.read_seq);
        break;
      case 'typing':
        if (ev.user !== s.me.id) s.setTyping(ev.ch, ev.user);
        break;
      case 'channel_joined':
        s.upsertChannel(ev.channel);
        break;
      case 'member_joined':
      case 'member_left':
        this.membersLoaded.delete(ev.ch);
        if (ev.user === s.me.id && ev.ev === 'member_left') s.removeChannel(ev.ch);
        else if (s.channel(ev.ch)) {
          s.channel(ev.ch).members += ev.ev === 'member_joined' ? 1 : -1;
          s.emit('channels');
        }
        if (!s.user(ev.user)) this.loadUsers();
        break;
      default:
        break;
    }
  }

  async loadUsers() {
    try {
      this.store.setUsers((await this.req('user_list')).users);
    } catch { /* later */ }
  }

  // A live seq skipped: fetch what is missing after our checkpoint
  async fillGap(ch) {
    if (this.filling.has(ch)) {
      this.filling.set(ch, true);
      return;
    }
    this.filling.set(ch, false);
    try {
      const open = this.store.win?.ch === ch;
      const maxPages = open ? GAP_PAGES_OPEN : GAP_PAGES_OTHER;
      for (let page = 0; ; page++) {
        const c = this.store.channel(ch);
        if (!c || c.seen >= c.head) break;
        if (page === maxPages) {
          this.store.skipTo(ch, c.head);
          this.refreshChannels();
          break;
        }
        const reply = await this.req('history', { ch, after: c.seen, limit: 200 });
        this.store.ingest(ch, reply.messages);
        this.store.setCounts(ch, { head: reply.head, read_seq: reply.read_seq });
        if (!reply.has_more_after) break;
      }
    } catch { /* the next reconnect syncs */ }
    const again = this.filling.get(ch);
    this.filling.delete(ch);
    if (again) this.fillGap(ch);
  }

  // Our own message was stored: it is a message like any other
  acked(item, reply) {
    const s = this.store;
    const msg = {
      ch: reply.ch, seq: reply.seq, ts: reply.ts, author: s.me.id, body: item.body,
      client_msg_id: item.cmid, ...(item.quote ? { ref: item.quote } : {}),
    };
    const c = s.channel(msg.ch);
    if (!c) return;
    const { gap } = s.ingest(msg.ch, [msg]);
    if (gap) this.fillGap(msg.ch);
    s.setRead(msg.ch, msg.seq); // the server moved our read position with the send
    if (s.win?.ch === msg.ch && s.win.dividerAfter !== null) {
      s.win.dividerAfter = null; // we answered: caught up
      s.emit('window', { reason: 'divider' });
    }
    c.affinity = (c.affinity || 0) + 1;
  }

  // ---------------------------------------------------------------- history of the open channel

  // opts: {around: seq} | {latest: true} | {} (first unread); preview: the
  // channel object of a public channel we are not a member of
  async openChannel(ch, { around = null, latest = false, preview = null } = {}) {
    const mode = around ? 'around' : latest ? 'latest' : 'unread';
    const w = this.store.openWindow(ch, mode, around, preview);
    this.loadMembers(ch);
    const fields = { ch, limit: PAGE };
    if (around) fields.around = around;
    else if (!latest) fields.around_unread = true;
    try {
      this.store.setFirstPage(w.id, await this.req('history', fields));
    } catch (err) {
      this.store.windowError(w.id, err);
    }
  }

  async loadOlder() {
    const w = this.store.win;
    if (!w || w.loading || w.loadingBefore || !w.hasMoreBefore || !w.msgs.length) return;
    w.loadingBefore = true;
    try {
      const reply = await this.req('history', { ch: w.ch, before: w.msgs[0].seq, limit: PAGE });
      this.store.prependPage(w.id, reply);
    } catch {
      w.loadingBefore = false;
      this.retryLater(w);
    }
  }

  async loadNewer() {
    const w = this.store.win;
    if (!w || w.loading || w.loadingAfter || !w.hasMoreAfter) return;
    w.loadingAfter = true;
    const after = w.msgs.length ? w.msgs[w.msgs.length - 1].seq : 0;
    try {
      const reply = await this.req('history', { ch: w.ch, after, limit: PAGE });
      this.store.appendPage(w.id, reply);
    } catch {
      w.loadingAfter = false;
      this.retryLater(w);
    }
  }

  // A page failed (rate limited, offline): the view asks again in a while
  retryLater(w) {
    setTimeout(() => {
      if (this.store.current(w.id)) this.store.emit('window', { reason: 'retry' });
    }, 1500);
  }

  async loadMembers(ch) {
    if (this.membersLoaded.has(ch) || !this.conn.ready) return;
    this.membersLoaded.add(ch);
    try {
      const { members } = await this.req('channel_members', { ch });
      this.store.members.set(ch, members);
      for (const u of members) if (!this.store.user(u.id)) this.store.users.set(u.id, u);
    } catch {
      this.membersLoaded.delete(ch);
    }
  }

  // ---------------------------------------------------------------- read positions

  // Mark read up to seq; at most one request in flight per channel
  markRead(ch, seq) {
    const c = this.store.channel(ch);
    if (!c || seq <= c.read_seq) return;
    this.store.setRead(ch, seq);
    c.affinity = (c.affinity || 0) + 0.5;
    const r = this.reads.get(ch) || { wanted: 0, busy: false };
    r.wanted = Math.max(r.wanted, seq);
    this.reads.set(ch, r);
    if (!r.busy) this.flushRead(ch, r);
  }

  async flushRead(ch, r) {
    r.busy = true;
    while (r.wanted) {
      const seq = r.wanted;
      r.wanted = 0;
      try {
        await this.req('read', { ch, seq });
      } catch { /* the position is sent again on the next read */ }
    }
    r.busy = false;
  }
}
