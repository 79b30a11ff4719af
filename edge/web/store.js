// Client state: users, channels with their unread counts and checkpoints,
// the message window of the open channel, and who is typing. No I/O here:
// sync.js feeds it, the views read it and listen to its events:
//   channels  the channel list, a count or a setting changed
//   window    the open channel's message window changed
//   typing    who is typing changed

export const WINDOW_MAX = 300; // messages kept in memory and in the DOM for the open channel
const TYPING_TTL_MS = 5000;
const UNREAD_CAP = 1000;

export class Store extends EventTarget {
  constructor() {
    super();
    this.me = null;
    this.tenant = null;
    this.users = new Map();
    this.channels = new Map(); // id -> channel object of the protocol + seen
    this.order = [];           // channel ids, by affinity as the server ranked them
    this.members = new Map();  // ch -> [user], for @-completion
    this.win = null;
    this.winSeq = 0;
    this.liveReading = false;  // the view shows the newest messages to someone: no badge for them
    this.typing = new Map();   // ch -> Map(uid -> expiry)
    this.typingTimer = null;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---------------------------------------------------------------- users

  setSession(me, tenant) {
    this.me = me;
    this.tenant = tenant;
    this.users.set(me.id, me);
  }

  setUsers(list) {
    for (const u of list) this.users.set(u.id, u);
    this.emit('channels');
    this.emit('window', { reason: 'users' });
  }

  user(id) {
    return this.users.get(id);
  }

  userByHandle(handle) {
    for (const u of this.users.values()) if (u.handle === handle) return u;
    return null;
  }

  // ---------------------------------------------------------------- channels

  channel(id) {
    return this.channels.get(id);
  }

  isDirect(c) {
    return c.type === 'dm' || c.type === 'group';
  }

  // What to call a channel: #name, or the other people of a DM
  channelTitle(c) {
    if (!this.isDirect(c)) return c.name;
    const others = (c.member_ids || []).filter((id) => id !== this.me?.id);
    if (!others.length) return c.name || 'Note to self';
    return others.map((id) => this.user(id)?.display_name || this.user(id)?.handle || `user ${id}`).join(', ');
  }

  // The server's list replaces ours; the checkpoint (seen) of a channel we
  // already knew is kept so that sync fetches what we missed.
  setChannels(list) {
    const next = new Map();
    for (const c of list) next.set(c.id, this.merge(c));
    this.channels = next;
    this.order = list.map((c) => c.id);
    this.emit('channels');
  }

  upsertChannel(c) {
    const merged = this.merge(c);
    const known = this.channels.has(c.id);
    this.channels.set(c.id, merged);
    if (!known) {
      const at = this.order.findIndex((id) => (this.channels.get(id).affinity || 0) < (c.affinity || 0));
      if (at < 0) this.order.push(c.id);
      else this.order.splice(at, 0, c.id);
    }
    this.emit('channels');
    return merged;
  }

  // Replies that carry a channel are not all complete (channel_settings
  // from the membership stage has no head or read_seq): keep what we knew.
  merge(c) {
    const old = this.channels.get(c.id);
    const merged = { head: 0, read_seq: 0, unread: 0, affinity: 0, members: 0, ...old };
    for (const [key, value] of Object.entries(c)) if (value !== undefined && value !== null) merged[key] = value;
    merged.seen = old ? old.seen : merged.head;
    return merged;
  }

  removeChannel(id) {
    this.channels.delete(id);
    this.order = this.order.filter((x) => x !== id);
    this.emit('channels');
  }

  // Unread total for the document title: muted channels do not count
  unreadTotal() {
    let n = 0;
    for (const c of this.channels.values()) if (!c.muted) n += c.unread || 0;
    return n;
  }

  // Our read position moved to seq (our read, another device's, our send)
  setRead(ch, seq) {
    const c = this.channels.get(ch);
    if (!c || seq <= c.read_seq) return;
    c.read_seq = seq;
    c.unread = this.countUnread(c);
    this.emit('channels');
    this.emit('window', { reason: 'read' });
  }

  // Unread after read_seq: exact when the window holds everything up to the
  // head, otherwise bounded by what the server told us.
  countUnread(c) {
    if (c.read_seq >= c.head) return 0;
    const w = this.win;
    if (w && w.ch === c.id && !w.loading && !w.hasMoreAfter && w.msgs.length && w.msgs[0].seq <= c.read_seq + 1) {
      let n = 0;
      for (const m of w.msgs) if (m.seq > c.read_seq && !m.deleted && m.author !== this.me.id) n++;
      return n;
    }
    return Math.min(c.unread || 0, c.head - c.read_seq, UNREAD_CAP);
  }

  // Counts from the server (sync) are the truth
  setCounts(ch, { head, read_seq: readSeq, unread }) {
    const c = this.channels.get(ch);
    if (!c) return;
    if (head !== undefined) c.head = Math.max(c.head, head);
    if (readSeq !== undefined) c.read_seq = Math.max(c.read_seq, readSeq);
    if (unread !== undefined) c.unread = unread;
    this.emit('channels');
  }

  // ---------------------------------------------------------------- messages

  // Take messages of a channel in ascending seq order (a live event, a sync
  // page, a gap fill, our own acknowledged send). Returns {gap: true} when a
  // message is past the checkpoint + 1: the caller fetches what is missing.
  ingest(ch, msgs) {
    const c = this.channels.get(ch);
    if (!c) return { unknown: true };
    let gap = false;
    let changed = false;
    for (const msg of msgs) {
      if (msg.seq > c.head) c.head = msg.seq;
      if (msg.seq > c.seen + 1) { gap = true; break; }
      if (msg.seq === c.seen + 1) {
        c.seen = msg.seq;
        c.last_ts = msg.ts;
        const readingNow = this.liveReading && this.win?.ch === ch;
        if (!msg.deleted && msg.author !== this.me.id && msg.seq > c.read_seq && !readingNow) c.unread = (c.unread || 0) + 1;
        changed = true;
      }
      this.windowPut(msg);
    }
    if (changed || gap) this.emit('channels');
    return { gap };
  }

  // The checkpoint jumps to the head (too much to fetch for a channel nobody
  // is looking at); a window that was live is now detached from the head.
  skipTo(ch, head) {
    const c = this.channels.get(ch);
    if (!c) return;
    c.head = Math.max(c.head, head);
    c.seen = c.head;
    const w = this.win;
    if (w && w.ch === ch && !w.loading && w.msgs.length && w.msgs[w.msgs.length - 1].seq < c.head) {
      w.hasMoreAfter = true;
      this.emit('window', { reason: 'detached' });
    }
  }

  editMessage(ch, seq, changes) {
    const w = this.win;
    if (!w || w.ch !== ch || !w.msgs.length) return;
    const i = seq - w.msgs[0].seq;
    const old = w.msgs[i];
    if (!old || old.seq !== seq) return;
    w.msgs[i] = { ...old, ...changes };
    if (changes.deleted && !old.deleted) {
      const c = this.channels.get(ch);
      if (c && seq > c.read_seq && old.author !== this.me.id && c.unread > 0) {
        c.unread--;
        this.emit('channels');
      }
    }
    this.emit('window', { reason: 'edit', seq });
  }

  // ---------------------------------------------------------------- the window

  // A new window for a channel; its first page is loading. mode: 'unread'
  // (open at the first unread), 'around' (a given seq), 'latest'.
  openWindow(ch, mode, target = null, preview = null) {
    this.win = {
      id: ++this.winSeq, ch, mode, target, preview,
      msgs: [], loading: true, error: null,
      hasMoreBefore: false, hasMoreAfter: false,
      loadingBefore: false, loadingAfter: false,
      dividerAfter: null, pinned: true,
    };
    this.emit('window', { reason: 'open' });
    return this.win;
  }

  current(id) {
    return this.win && this.win.id === id ? this.win : null;
  }

  setFirstPage(id, reply) {
    const w = this.current(id);
    if (!w) return;
    const c = this.channels.get(w.ch);
    w.msgs = reply.messages.slice(-WINDOW_MAX);
    w.loading = false;
    w.hasMoreBefore = reply.has_more_before || reply.messages.length > w.msgs.length;
    w.hasMoreAfter = reply.has_more_after;
    if (w.mode === 'unread') {
      // the divider marks what was unread when the channel was opened
      const unread = reply.messages.some((m) => m.seq > reply.read_seq && m.author !== this.me.id && !m.deleted);
      w.dividerAfter = unread || reply.has_more_after ? reply.read_seq : null;
    }
    if (c) {
      c.head = Math.max(c.head, reply.head);
      c.read_seq = Math.max(c.read_seq, reply.read_seq);
      const hi = w.msgs.length ? w.msgs[w.msgs.length - 1].seq : 0;
      if (!w.hasMoreAfter) {
        if (c.seen > hi) w.hasMoreAfter = true; // events came while loading
        else c.seen = hi;
      }
      c.unread = this.countUnread(c);
      this.emit('channels');
    }
    this.emit('window', { reason: 'first' });
  }

  windowError(id, err) {
    const w = this.current(id);
    if (!w) return;
    w.loading = false;
    w.error = err.message || String(err);
    this.emit('window', { reason: 'error' });
  }

  prependPage(id, reply) {
    const w = this.current(id);
    if (!w) return;
    w.loadingBefore = false;
    const lo = w.msgs.length ? w.msgs[0].seq : Infinity;
    const older = reply.messages.filter((m) => m.seq < lo);
    w.msgs = older.concat(w.msgs);
    w.hasMoreBefore = reply.has_more_before;
    if (w.msgs.length > WINDOW_MAX) {
      w.msgs.length = WINDOW_MAX; // drop from the far end
      w.hasMoreAfter = true;
    }
    this.emit('window', { reason: 'prepend' });
  }

  appendPage(id, reply) {
    const w = this.current(id);
    if (!w) return;
    w.loadingAfter = false;
    const hi = w.msgs.length ? w.msgs[w.msgs.length - 1].seq : 0;
    const newer = reply.messages.filter((m) => m.seq > hi);
    w.msgs = w.msgs.concat(newer);
    w.hasMoreAfter = reply.has_more_after;
    if (w.msgs.length > WINDOW_MAX) {
      w.msgs.splice(0, w.msgs.length - WINDOW_MAX);
      w.hasMoreBefore = true;
    }
    const c = this.channels.get(w.ch);
    if (c && !w.hasMoreAfter) {
      const last = w.msgs.length ? w.msgs[w.msgs.length - 1].seq : 0;
      if (c.seen > last) w.hasMoreAfter = true;
      else c.seen = Math.max(c.seen, last);
    }
    this.emit('window', { reason: 'append' });
  }

  // Put one message into the window if it belongs there
  windowPut(msg) {
    const w = this.win;
    if (!w || w.ch !== msg.ch || w.loading) return;
    const n = w.msgs.length;
    const lo = n ? w.msgs[0].seq : null;
    const hi = n ? w.msgs[n - 1].seq : 0;
    if (n && msg.seq >= lo && msg.seq <= hi) {
      w.msgs[msg.seq - lo] = msg; // dedupe by seq: the newest copy wins
    } else if (w.hasMoreAfter || msg.seq <= hi) {
      return;
    } else if (msg.seq === hi + 1 || (!n && !w.hasMoreBefore)) {
      w.msgs.push(msg);
      if (w.msgs.length > WINDOW_MAX) {
        if (w.pinned) {
          w.msgs.shift();
          w.hasMoreBefore = true;
        } else {
          w.msgs.pop(); // the reader is up in the history: keep what they read
          w.hasMoreAfter = true;
        }
      }
    } else {
      w.hasMoreAfter = true; // a hole: the view fetches `after` when needed
    }
    this.emit('window', { reason: 'message', seq: msg.seq });
  }

  // ---------------------------------------------------------------- typing

  setTyping(ch, uid) {
    if (!this.typing.has(ch)) this.typing.set(ch, new Map());
    this.typing.get(ch).set(uid, Date.now() + TYPING_TTL_MS);
    this.emit('typing');
    this.scheduleTypingExpiry();
  }

  clearTyping(ch, uid) {
    if (this.typing.get(ch)?.delete(uid)) this.emit('typing');
  }

  typingIn(ch) {
    const now = Date.now();
    const map = this.typing.get(ch);
    if (!map) return [];
    return [...map].filter(([, exp]) => exp > now).map(([uid]) => uid);
  }

  scheduleTypingExpiry() {
    clearTimeout(this.typingTimer);
    let next = Infinity;
    const now = Date.now();
    for (const map of this.typing.values()) {
      for (const [uid, exp] of map) {
        if (exp <= now) map.delete(uid);
        else next = Math.min(next, exp);
      }
    }
    if (next < Infinity) {
      this.typingTimer = setTimeout(() => {
        this.scheduleTypingExpiry();
        this.emit('typing');
      }, next - now + 20);
    }
  }
}
