// Messages being sent. Each has a client_msg_id made once, when the user
// presses Enter, and every attempt (a timeout, a dropped connection, a page
// reload, the Retry button) sends that same id: the server deduplicates, so
// a message is never posted twice. The queue survives a reload
// (localStorage) and is sent in order, one at a time.
//
// Item states: 'sending' (trying, or waiting for the connection), 'failed'
// (shown with Retry / Discard). Dispatches 'change' with {ch}.

const SEND_TIMEOUT_MS = 10000;
const AUTO_ATTEMPTS = 4; // retriable failures before the item shows as failed

export class Outbox extends EventTarget {
  // onAck(item, reply) is called when the server has stored the message
  constructor(conn, storageKey, onAck) {
    super();
    this.conn = conn;
    this.key = storageKey;
    this.onAck = onAck;
    this.items = [];
    this.busy = false;
    this.timer = null;
    this.load();
  }

  load() {
    try {
      const saved = JSON.parse(localStorage.getItem(this.key) || '[]');
      this.items = saved.map((i) => ({ ...i, state: 'sending', attempts: 0, notBefore: 0 }));
    } catch {
      this.items = [];
    }
  }

  save() {
    const plain = this.items.map(({ cmid, ch, body, ref, quote, ts }) => ({ cmid, ch, body, ref, quote, ts }));
    try {
      if (plain.length) localStorage.setItem(this.key, JSON.stringify(plain));
      else localStorage.removeItem(this.key);
    } catch { /* storage full or disabled: the queue still works in memory */ }
  }

  changed(ch) {
    this.save();
    this.dispatchEvent(new CustomEvent('change', { detail: { ch } }));
  }

  forChannel(ch) {
    return this.items.filter((i) => i.ch === ch);
  }

  // quote: the referenced message {ch, seq, author, body} for "reply privately"
  add(ch, body, quote = null) {
    const item = {
      cmid: crypto.randomUUID(), ch, body, ts: Date.now(),
      ref: quote ? { ch: quote.ch, seq: quote.seq } : undefined,
      quote: quote || undefined,
      state: 'sending', attempts: 0, notBefore: 0, error: null,
    };
    this.items.push(item);
    this.changed(ch);
    this.pump();
    return item;
  }

  retry(cmid) {
    const item = this.items.find((i) => i.cmid === cmid);
    if (!item) return;
    Object.assign(item, { state: 'sending', attempts: 0, notBefore: 0, error: null });
    this.changed(item.ch);
    this.pump();
  }

  discard(cmid) {
    const item = this.items.find((i) => i.cmid === cmid);
    if (!item) return;
    this.items = this.items.filter((i) => i !== item);
    this.changed(item.ch);
  }

  // After a (re)connection: send everything, failed retriable ones included
  flush() {
    for (const item of this.items) {
      if (item.state === 'failed' && item.retriable) Object.assign(item, { state: 'sending', attempts: 0, notBefore: 0 });
    }
    this.pump();
  }

  async pump() {
    if (this.busy) return;
    this.busy = true;
    clearTimeout(this.timer);
    try {
      while (this.conn.ready) {
        const now = Date.now();
        const item = this.items.find((i) => i.state === 'sending' && i.notBefore <= now);
        if (!item) break;
        await this.attempt(item);
      }
    } finally {
      this.busy = false;
    }
    const waits = this.items.filter((i) => i.state === 'sending' && i.notBefore > Date.now());
    if (waits.length && this.conn.ready) {
      const next = Math.min(...waits.map((i) => i.notBefore));
      this.timer = setTimeout(() => this.pump(), next - Date.now());
    }
  }

  async attempt(item) {
    try {
      const reply = await this.conn.request('send', {
        ch: item.ch, client_msg_id: item.cmid, body: item.body, ...(item.ref ? { ref: item.ref } : {}),
      }, { timeoutMs: SEND_TIMEOUT_MS });
      this.items = this.items.filter((i) => i !== item);
      this.save();
      this.onAck(item, reply);
      this.dispatchEvent(new CustomEvent('change', { detail: { ch: item.ch } }));
    } catch (err) {
      if (err.code === 'offline') return; // flush() runs on the next 'ready'
      item.attempts++;
      item.retriable = err.retriable;
      item.error = describe(err);
      if (!err.retriable || item.attempts >= AUTO_ATTEMPTS) {
        item.state = 'failed';
      } else {
        const backoff = Math.min(8000, 1000 * 2 ** (item.attempts - 1));
        item.notBefore = Date.now() + Math.max(err.retryAfterMs || 0, backoff);
      }
      this.changed(item.ch);
    }
  }
}

function describe(err) {
  switch (err.code) {
    case 'timeout': return 'No answer from the server';
    case 'msg_too_long': return 'Message too long (40,000 characters at most)';
    case 'not_in_channel': return 'Join the channel to send messages';
    case 'rate_limited': return 'Sending too fast';
    default: return err.message || err.code;
  }
}
