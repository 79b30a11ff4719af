// The WebSocket connection to the edge: request/reply by rid, events,
// authentication, heartbeat, and reconnection with exponential backoff and
// jitter. It knows nothing about channels or messages.
//
// Events dispatched (CustomEvent, data in .detail):
//   status  {state: 'connecting'|'online'|'offline', retryAt, attempt}
//   ready   the auth reply, each time a (re)connection is authenticated
//   event   a server event object {ev, ...}
//   authfail the token was refused: the caller must log in again

const REQUEST_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 25000;
const PING_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;

// An error reply or a transport failure. retriable tells the caller whether
// the same request may be sent again later.
export class RequestError extends Error {
  constructor(code, message, { retriable = false, retryAfterMs = 0 } = {}) {
    super(message || code);
    this.code = code;
    this.retriable = retriable;
    this.retryAfterMs = retryAfterMs;
  }
}

export class Connection extends EventTarget {
  constructor(token, url = defaultUrl()) {
    super();
    this.token = token;
    this.url = url;
    this.ws = null;
    this.state = 'offline';
    this.ready = false;
    this.nextRid = 1;
    this.pending = new Map(); // rid -> {resolve, reject, timer}
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.stopped = true;
    this.onOnline = () => this.reconnectNow();
    this.onVisible = () => { if (document.visibilityState === 'visible') this.reconnectNow(); };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.retryTimer);
    this.teardown('stopped');
  }

  // Skip the remaining backoff (the browser says it is online again, the
  // tab became visible, or the user clicked "Retry now").
  reconnectNow() {
    if (this.stopped || this.state !== 'offline') return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  // Send a request; resolves with the reply (ok: true) or rejects with a
  // RequestError. Requests are only sent on an authenticated connection.
  request(op, fields = {}, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    if (!this.ready) {
      return Promise.reject(new RequestError('offline', 'not connected', { retriable: true }));
    }
    return this.rawRequest(op, fields, timeoutMs);
  }

  rawRequest(op, fields, timeoutMs) {
    return new Promise((resolve, reject) => {
      const rid = this.nextRid++;
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new RequestError('timeout', `${op}: no reply`, { retriable: true }));
      }, timeoutMs);
      this.pending.set(rid, { resolve, reject, timer });
      try {
        this.ws.send(JSON.stringify({ ...fields, op, rid }));
      } catch {
        clearTimeout(timer);
        this.pending.delete(rid);
        reject(new RequestError('offline', 'not connected', { retriable: true }));
      }
    });
  }

  // ---------------------------------------------------------------- internals

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, attempt: this.attempt, ...extra } }));
  }

  open() {
    this.teardown('reconnecting');
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url, 'chorus.v1');
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => this.authenticate(ws));
    ws.addEventListener('message', (e) => this.onFrame(e.data));
    ws.addEventListener('close', () => { if (this.ws === ws) this.dropped(); });
    ws.addEventListener('error', () => { /* a close event follows */ });
  }

  async authenticate(ws) {
    try {
      const reply = await this.rawRequest('auth', { token: this.token }, REQUEST_TIMEOUT_MS);
      if (this.ws !== ws) return;
      this.ready = true;
      this.attempt = 0;
      this.startHeartbeat();
      this.setState('online');
      this.dispatchEvent(new CustomEvent('ready', { detail: reply }));
    } catch (err) {
      if (this.ws !== ws) return;
      if (err.code === 'bad_credentials') {
        this.stop();
        this.dispatchEvent(new CustomEvent('authfail', { detail: err }));
      } else {
        ws.close();
      }
    }
  }

  onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.re !== undefined) {
      const p = this.pending.get(msg.re);
      if (!p) return;
      this.pending.delete(msg.re);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg);
      else {
        p.reject(new RequestError(msg.error || 'internal', msg.message, {
          retriable: !!msg.retriable, retryAfterMs: msg.retry_after_ms || 0,
        }));
      }
    } else if (msg.ev) {
      this.dispatchEvent(new CustomEvent('event', { detail: msg }));
    }
  }

  startHeartbeat() {
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.pingTimer = setInterval(() => {
      this.rawRequest('ping', {}, PING_TIMEOUT_MS).catch(() => {
        if (this.ws === ws) ws.close(); // dead socket: drop it and reconnect
      });
    }, PING_EVERY_MS);
  }

  dropped() {
    this.teardown('connection lost');
    if (!this.stopped) this.scheduleReconnect();
  }

  scheduleReconnect() {
    // Full jitter on an exponential ceiling: spreads reconnect storms
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this.attempt++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
    this.setState('offline', { retryAt: Date.now() + delay });
  }

  teardown(reason) {
    clearInterval(this.pingTimer);
    this.ready = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(); } catch { /* already closed */ }
    }
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError('offline', reason, { retriable: true }));
    }
    this.pending.clear();
  }
}

function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}
