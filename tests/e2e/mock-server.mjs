#!/usr/bin/env node
// A stand-in for chorusd's edge, for developing and testing the web client
// without the C server. It takes the same command line as chorusd
//   --data DIR --http HOST:PORT --api ENDPOINT --seed-demo
// (--api is accepted and ignored), serves edge/web at /, the REST login and
// message post, and the WebSocket JSON protocol of docs/protocol.md with a
// hand-written RFC 6455 frame codec. State is a JSON file in --data, written
// synchronously after every change, so a SIGKILL + restart keeps everything.
// Not a reference implementation: it does what the web client needs.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WEB_ROOT = path.resolve(HERE, '../../edge/web');
const PAGE_MAX = 200;
const UNREAD_CAP = 1000;

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const args = { seedDemo: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--seed-demo') args.seedDemo = true;
    else if (a === '--data') args.data = argv[++i];
    else if (a === '--http') args.http = argv[++i];
    else if (a === '--api') args.api = argv[++i];
    else if (a === '--web') args.web = argv[++i];
  }
  if (!args.data || !args.http) {
    console.error('usage: mock-server.mjs --data DIR --http HOST:PORT [--api EP] [--seed-demo]');
    process.exit(2);
  }
  return args;
}

// ---------------------------------------------------------------- state

class ProtoError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.code = code;
    this.extra = extra;
  }
}

const RETRIABLE = new Set(['rate_limited', 'storage_unavailable', 'stage_unavailable']);

class State {
  constructor(file) {
    this.file = file;
    this.d = {
      nextId: 1,
      tenants: [], users: [], tokens: {}, channels: [],
      members: {},   // "ch:uid" -> {muted, notify_always, affinity, read_seq, delivered}
      messages: {},  // ch -> [message] (index = seq - 1)
      dedupe: {},    // "uid:cmid" -> {ch, seq, ts, body}
    };
    if (fs.existsSync(file)) this.d = JSON.parse(fs.readFileSync(file, 'utf8'));
  }

  save() {
    const tmp = this.file + '.tmp';
    fs.writeFileSync(tmp, JSON.stringify(this.d));
    fs.renameSync(tmp, this.file);
  }

  id() { return this.d.nextId++; }
  tenantByName(name) { return this.d.tenants.find((t) => t.name === name); }
  user(id) { return this.d.users.find((u) => u.id === id); }
  channel(id) { return this.d.channels.find((c) => c.id === id); }
  member(ch, uid) { return this.d.members[`${ch}:${uid}`]; }
  msgs(ch) { return (this.d.messages[ch] ||= []); }

  publicUser(u) {
    return { id: u.id, handle: u.handle, display_name: u.display_name, bot: !!u.bot };
  }

  addUser(tenant, handle, display_name, password) {
    const u = { id: this.id(), tenant, handle, display_name, password, bot: false };
    this.d.users.push(u);
    return u;
  }

  addChannel(tenant, name, type, memberIds) {
    const c = { id: this.id(), tenant, name, type, memberIds: [] };
    this.d.channels.push(c);
    for (const uid of memberIds) this.join(c, uid);
    return c;
  }

  join(c, uid) {
    if (!c.memberIds.includes(uid)) c.memberIds.push(uid);
    const key = `${c.id}:${uid}`;
    this.d.members[key] ||= { muted: false, notify_always: false, affinity: 0, read_seq: 0, delivered: 0 };
  }

  token(uid) {
    const t = crypto.randomBytes(24).toString('hex');
    this.d.tokens[t] = uid;
    return t;
  }

  unread(ch, uid) {
    const m = this.member(ch, uid);
    const list = this.msgs(ch);
    let n = 0;
    for (let i = list.length - 1; i >= 0 && list[i].seq > m.read_seq; i--) {
      const msg = list[i];
      if (!msg.deleted && msg.author !== uid) n++;
      if (n >= UNREAD_CAP) break;
    }
    return n;
  }

  channelView(c, uid) {
    const m = this.member(c.id, uid);
    const list = this.msgs(c.id);
    const view = {
      id: c.id, name: c.name, type: c.type, members: c.memberIds.length,
      muted: m.muted, notify_always: m.notify_always, affinity: m.affinity,
      head: list.length, read_seq: m.read_seq, unread: this.unread(c.id, uid),
      last_ts: list.length ? list[list.length - 1].ts : 0,
    };
    if (c.type === 'dm' || c.type === 'group') {
      view.member_ids = [...c.memberIds];
      view.name = c.memberIds.filter((id) => id !== uid)
        .map((id) => this.user(id).handle).join(',') || this.user(uid).handle;
    }
    return view;
  }

  // Send as uid; returns {reply, event or null}
  send(uid, tenant, { ch, client_msg_id, body, ref }) {
    if (typeof client_msg_id !== 'string' || !client_msg_id || Buffer.byteLength(client_msg_id) > 64) {
      throw new ProtoError('invalid_args', 'client_msg_id must be 1 to 64 bytes');
    }
    if (typeof body !== 'string') throw new ProtoError('invalid_args', 'body must be a string');
    const key = `${uid}:${client_msg_id}`;
    const prior = this.d.dedupe[key];
    if (prior) {
      if (prior.ch !== ch || prior.body !== body) throw new ProtoError('idempotency_conflict', 'client_msg_id reused');
      return { reply: { ch, seq: prior.seq, ts: prior.ts, duplicate: true }, msg: null };
    }
    const c = this.visibleChannel(ch, uid, tenant);
    if (!c.memberIds.includes(uid)) throw new ProtoError('not_in_channel', 'join the channel first');
    if (!body.length) throw new ProtoError('no_text', 'empty body');
    if ([...body].length > 40000) throw new ProtoError('msg_too_long', 'body over 40,000 characters');
    const list = this.msgs(ch);
    const msg = { ch, seq: list.length + 1, author: uid, ts: Date.now(), body, client_msg_id };
    if (ref) {
      if (c.type !== 'dm' && c.type !== 'group') throw new ProtoError('message_not_found', 'ref only in DMs');
      const rc = this.visibleChannel(ref.ch, uid, tenant, true);
      const orig = this.msgs(rc.id)[ref.seq - 1];
      if (!orig) throw new ProtoError('message_not_found', 'no such message');
      msg.ref = { ch: ref.ch, seq: ref.seq, author: orig.author, body: orig.body };
    }
    const mentions = [];
    for (const m of body.matchAll(/@([a-z0-9._-]+)/g)) {
      const u = this.d.users.find((x) => x.tenant === tenant && x.handle === m[1]);
      if (u && c.memberIds.includes(u.id) && !mentions.includes(u.id)) mentions.push(u.id);
    }
    if (mentions.length) msg.mentions = mentions;
    list.push(msg);
    const m = this.member(ch, uid);
    m.read_seq = msg.seq;
    m.affinity += 1;
    this.d.dedupe[key] = { ch, seq: msg.seq, ts: msg.ts, body };
    this.save();
    return { reply: { ch, seq: msg.seq, ts: msg.ts, duplicate: false }, msg };
  }

  // A channel uid may see (member, or public when allowPublic)
  visibleChannel(ch, uid, tenant, allowPublic = true) {
    const c = this.channel(ch);
    if (!c || c.tenant !== tenant) throw new ProtoError('channel_not_found', 'no such channel');
    if (c.memberIds.includes(uid)) return c;
    if (allowPublic && c.type === 'public') return c;
    throw new ProtoError('channel_not_found', 'no such channel');
  }
}

function seedDemo(st) {
  if (st.tenantByName('demo')) return;
  const tenant = { id: st.id(), name: 'demo' };
  st.d.tenants.push(tenant);
  const t = tenant.id;
  const alice = st.addUser(t, 'alice', 'Alice Martin', 'chorus-demo');
  const bob = st.addUser(t, 'bob', 'Bob Chen', 'chorus-demo');
  const carol = st.addUser(t, 'carol', 'Carol Diaz', 'chorus-demo');
  const dave = st.addUser(t, 'dave', 'Dave Okafor', 'chorus-demo');
  const all = [alice.id, bob.id, carol.id];
  const general = st.addChannel(t, 'general', 'public', all);
  st.addChannel(t, 'random', 'public', all);
  st.addChannel(t, 'leads', 'private', [alice.id, carol.id]);
  const dm = st.addChannel(t, '', 'dm', [alice.id, bob.id]);
  st.addChannel(t, '', 'group', [alice.id, bob.id, carol.id]);
  st.join(general, dave.id);
  const words = ['deploy', 'review', 'lunch', 'standup', 'release', 'bug', 'design', 'metrics', 'coffee', 'docs'];
  const start = Date.now() - 1200 * 7 * 60 * 1000;
  const list = st.msgs(general.id);
  for (let i = 1; i <= 1200; i++) {
    const author = all[i % 3 === 0 ? 2 : i % 2];
    list.push({
      ch: general.id, seq: i, author, ts: start + i * 7 * 60 * 1000,
      body: `History message ${i}: about the ${words[i % words.length]}`, client_msg_id: `seed-${i}`,
    });
  }
  for (const uid of all) st.member(general.id, uid).read_seq = 1200;
  st.msgs(dm.id).push({ ch: dm.id, seq: 1, author: bob.id, ts: Date.now() - 3600e3, body: 'Hi Alice, welcome to Chorus!', client_msg_id: 'seed-dm-1' });
  st.member(dm.id, alice.id).read_seq = 1;
  st.member(dm.id, bob.id).read_seq = 1;
  st.save();
}

// ---------------------------------------------------------------- sessions and events

class Hub {
  constructor(st) {
    this.st = st;
    this.sessions = new Set(); // {uid, tenant, send(obj)}
  }

  // Deliver an event to the given user ids; notifyFor(uid) decides notify
  deliver(ev, uids, notifyFor = () => false) {
    for (const s of this.sessions) {
      if (!s.uid || !uids.includes(s.uid)) continue;
      s.send(notifyFor(s.uid) ? { ...ev, notify: true } : ev);
    }
  }

  messageEvent(msg) {
    const c = this.st.channel(msg.ch);
    const notify = (uid) => {
      // as chorusd's fan-out: never the author nor a muted member; DMs,
      // mentions and notify_always do
      const m = this.st.member(c.id, uid);
      if (uid === msg.author || m.muted) return false;
      return c.type === 'dm' || c.type === 'group' || !!msg.mentions?.includes(uid) || m.notify_always;
    };
    this.deliver({ ev: 'message', ...msg }, c.memberIds, notify);
  }
}

function handleOp(hub, sess, req) {
  const st = hub.st;
  const { op } = req;
  const need = (k, type) => {
    if (typeof req[k] !== type) throw new ProtoError('invalid_args', `${k} must be a ${type}`);
    return req[k];
  };
  if (op === 'ping') return { pong: true, ts: Date.now() };
  if (op === 'login') {
    const r = login(st, req);
    sess.uid = r.user.id; sess.tenant = r.tenant.id;
    return r;
  }
  if (op === 'auth') {
    const uid = st.d.tokens[need('token', 'string')];
    if (!uid) throw new ProtoError('bad_credentials', 'unknown token');
    const u = st.user(uid);
    sess.uid = uid; sess.tenant = u.tenant; sess.token = req.token;
    const t = st.d.tenants.find((x) => x.id === u.tenant);
    return { user: st.publicUser(u), tenant: t };
  }
  if (!sess.uid) throw new ProtoError('not_authed', 'authenticate first');
  const uid = sess.uid;
  const tenant = sess.tenant;
  switch (op) {
    case 'logout':
      delete st.d.tokens[sess.token]; st.save();
      sess.uid = 0;
      return {};
    case 'user_list':
      return { users: st.d.users.filter((u) => u.tenant === tenant).map((u) => st.publicUser(u)) };
    case 'channel_list': {
      const list = st.d.channels.filter((c) => c.tenant === tenant && c.memberIds.includes(uid))
        .map((c) => st.channelView(c, uid));
      list.sort((a, b) => b.affinity - a.affinity);
      return { channels: list };
    }
    case 'channel_browse':
      return {
        channels: st.d.channels.filter((c) => c.tenant === tenant && c.type === 'public')
          .map((c) => ({ id: c.id, name: c.name, members: c.memberIds.length, joined: c.memberIds.includes(uid) })),
      };
    case 'channel_create': {
      const name = need('name', 'string');
      if (!/^[a-z0-9_-]{1,80}$/.test(name)) throw new ProtoError('invalid_args', 'bad channel name');
      if (st.d.channels.some((c) => c.tenant === tenant && c.name === name && c.type !== 'dm' && c.type !== 'group')) {
        throw new ProtoError('name_taken', 'the name is in use');
      }
      const c = st.addChannel(tenant, name, req.private ? 'private' : 'public', [uid]);
      st.save();
      return { channel: st.channelView(c, uid) };
    }
    case 'channel_join': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant);
      if (c.type !== 'public' && !c.memberIds.includes(uid)) throw new ProtoError('channel_not_found');
      const already = c.memberIds.includes(uid);
      st.join(c, uid); st.save();
      if (!already) {
        hub.deliver({ ev: 'member_joined', ch: c.id, user: uid }, c.memberIds.filter((x) => x !== uid));
        hub.deliver({ ev: 'channel_joined', channel: st.channelView(c, uid) }, [uid]);
      }
      return { channel: st.channelView(c, uid) };
    }
    case 'channel_leave': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant, false);
      if (c.type === 'dm' || c.type === 'group') throw new ProtoError('invalid_args', 'DMs cannot be left');
      c.memberIds = c.memberIds.filter((x) => x !== uid); st.save();
      hub.deliver({ ev: 'member_left', ch: c.id, user: uid }, [...c.memberIds, uid]);
      return {};
    }
    case 'channel_members': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant);
      return { members: c.memberIds.map((id) => st.publicUser(st.user(id))) };
    }
    case 'channel_settings': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant, false);
      const m = st.member(c.id, uid);
      if (typeof req.muted === 'boolean') m.muted = req.muted;
      if (typeof req.notify_always === 'boolean') m.notify_always = req.notify_always;
      st.save();
      return { channel: st.channelView(c, uid) };
    }
    case 'dm_open': {
      const others = need('users', 'object');
      if (!Array.isArray(others) || others.length < 1 || others.length > 8) throw new ProtoError('invalid_args', '1 to 8 users');
      const ids = [...new Set([uid, ...others])].sort((a, b) => a - b);
      for (const id of ids) {
        const u = st.user(id);
        if (!u || u.tenant !== tenant) throw new ProtoError('user_not_found', 'no such user');
      }
      const type = ids.length <= 2 ? 'dm' : 'group';
      let c = st.d.channels.find((x) => x.tenant === tenant && x.type === type
        && x.memberIds.length === ids.length && ids.every((id) => x.memberIds.includes(id)));
      if (!c) {
        c = st.addChannel(tenant, '', type, ids); st.save();
        for (const id of ids) hub.deliver({ ev: 'channel_joined', channel: st.channelView(c, id) }, [id]);
      }
      return { channel: st.channelView(c, uid) };
    }
    case 'send': {
      need('ch', 'number');
      const { reply, msg } = st.send(uid, tenant, req);
      if (msg) hub.messageEvent(msg);
      return reply;
    }
    case 'edit': case 'delete': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant, false);
      const msg = st.msgs(c.id)[need('seq', 'number') - 1];
      if (!msg || msg.deleted) throw new ProtoError('message_not_found', 'no such message');
      if (msg.author !== uid) throw new ProtoError('not_author', 'only the author may do that');
      if (op === 'edit') {
        msg.body = need('body', 'string');
        if (!msg.body) throw new ProtoError('no_text', 'empty body');
        msg.edited_ts = Date.now(); st.save();
        hub.deliver({ ev: 'message_edited', ch: c.id, seq: msg.seq, body: msg.body, edited_ts: msg.edited_ts }, c.memberIds);
        return { ch: c.id, seq: msg.seq, edited_ts: msg.edited_ts };
      }
      msg.deleted = true; msg.body = ''; st.save();
      hub.deliver({ ev: 'message_deleted', ch: c.id, seq: msg.seq }, c.memberIds);
      return { ch: c.id, seq: msg.seq };
    }
    case 'typing': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant, false);
      hub.deliver({ ev: 'typing', ch: c.id, user: uid }, c.memberIds.filter((x) => x !== uid));
      return {};
    }
    case 'history': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant);
      const limit = req.limit ?? 50;
      if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_MAX) throw new ProtoError('invalid_args', 'limit 1..200');
      const list = st.msgs(c.id);
      const head = list.length;
      const m = st.member(c.id, uid);
      const readSeq = m ? m.read_seq : 0;
      let lo; let hi; // 1-based inclusive
      if (req.before !== undefined) { hi = Math.min(req.before - 1, head); lo = Math.max(1, hi - limit + 1); }
      else if (req.after !== undefined) { lo = req.after + 1; hi = Math.min(head, req.after + limit); }
      else {
        let center = head;
        if (req.around !== undefined) center = Math.min(Math.max(1, req.around), head);
        else if (req.around_unread && readSeq < head) center = readSeq + 1;
        if (center === head) { hi = head; lo = Math.max(1, head - limit + 1); }
        else {
          lo = Math.max(1, center - Math.floor(limit / 2));
          hi = Math.min(head, lo + limit - 1);
          lo = Math.max(1, hi - limit + 1);
        }
      }
      const messages = hi >= lo ? list.slice(lo - 1, hi) : [];
      if (m) { m.affinity += 0.25; }
      return {
        ch: c.id, messages, has_more_before: lo > 1 && head > 0, has_more_after: hi < head,
        head, read_seq: readSeq,
      };
    }
    case 'read': {
      const c = st.visibleChannel(need('ch', 'number'), uid, tenant, false);
      const m = st.member(c.id, uid);
      const seq = Math.min(need('seq', 'number'), st.msgs(c.id).length);
      if (seq > m.read_seq) {
        m.read_seq = seq; m.affinity += 0.5; st.save();
        hub.deliver({ ev: 'read', ch: c.id, read_seq: m.read_seq }, [uid]);
      }
      return { ch: c.id, read_seq: m.read_seq };
    }
    case 'sync': {
      const cps = req.channels || {};
      const limit = Math.min(req.limit ?? 100, PAGE_MAX);
      const out = []; const removed = [];
      let total = 0;
      for (const key of Object.keys(cps)) {
        const c = st.channel(Number(key));
        if (!c || c.tenant !== tenant || !c.memberIds.includes(uid)) removed.push(Number(key));
      }
      for (const c of st.d.channels) {
        if (c.tenant !== tenant || !c.memberIds.includes(uid)) continue;
        const m = st.member(c.id, uid);
        const list = st.msgs(c.id);
        const cp = cps[String(c.id)] ?? m.delivered;
        m.delivered = Math.max(m.delivered, Math.min(cp, list.length));
        if (list.length <= cp) continue;
        const take = Math.min(limit, 1000 - total, list.length - cp);
        const messages = take > 0 ? list.slice(cp, cp + take) : [];
        total += messages.length;
        out.push({ ch: c.id, messages, has_more: cp + messages.length < list.length,
          head: list.length, read_seq: m.read_seq, unread: st.unread(c.id, uid) });
      }
      st.save();
      return { channels: out, removed };
    }
    default:
      throw new ProtoError('unknown_op', `unknown op ${op}`);
  }
}

function login(st, { tenant, handle, password }) {
  const t = st.tenantByName(tenant);
  if (!t) throw new ProtoError('tenant_not_found', 'no such workspace');
  const u = st.d.users.find((x) => x.tenant === t.id && x.handle === handle);
  if (!u || u.password !== password) throw new ProtoError('bad_credentials', 'wrong handle or password');
  const token = st.token(u.id);
  st.save();
  return { token, user: st.publicUser(u), tenant: { id: t.id, name: t.name } };
}

function errorReply(rid, e) {
  if (!(e instanceof ProtoError)) {
    console.error(e);
    e = new ProtoError('internal', 'internal error');
  }
  return { re: rid, ok: false, error: e.code, message: e.message, retriable: RETRIABLE.has(e.code), ...e.extra };
}

// ---------------------------------------------------------------- WebSocket (RFC 6455, server side)

function acceptSocket(req, socket, onText) {
  const key = req.headers['sec-websocket-key'];
  const protos = (req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
  if (!key || !protos.includes('chorus.v1')) {
    socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    return null;
  }
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: chorus.v1\r\n\r\n`);
  socket.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let fragments = [];
  const frame = (opcode, payload) => {
    const len = payload.length;
    let head;
    if (len < 126) head = Buffer.from([0x80 | opcode, len]);
    else if (len < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(len, 2); }
    else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(len), 2); }
    if (!socket.destroyed) socket.write(Buffer.concat([head, payload]));
  };
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = buf[0] & 0x80; const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f; let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const masked = buf[1] & 0x80;
      if (buf.length < off + (masked ? 4 : 0) + len) return;
      let payload = buf.subarray(off + (masked ? 4 : 0), off + (masked ? 4 : 0) + len);
      if (masked) {
        const mask = buf.subarray(off, off + 4);
        payload = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
      }
      buf = buf.subarray(off + (masked ? 4 : 0) + len);
      if (opcode === 0x8) { frame(0x8, Buffer.alloc(0)); socket.end(); return; }
      if (opcode === 0x9) { frame(0xA, payload); continue; }
      if (opcode === 0x1 || opcode === 0x0) {
        fragments.push(payload);
        if (fin) { const text = Buffer.concat(fragments).toString('utf8'); fragments = []; onText(text); }
      }
    }
  });
  return { send: (obj) => frame(0x1, Buffer.from(JSON.stringify(obj))) };
}

// ---------------------------------------------------------------- HTTP

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' };

function serveStatic(root, req, res) {
  const url = new URL(req.url, 'http://x');
  let rel = decodeURIComponent(url.pathname);
  if (rel.endsWith('/')) rel += 'index.html';
  const file = path.resolve(root, '.' + rel);
  if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found'); return;
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' });
  fs.createReadStream(file).pipe(res);
}

function readJson(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { try { resolve(JSON.parse(body || '{}')); } catch { resolve(null); } });
  });
}

const STATUS = { bad_credentials: 401, not_authed: 401, tenant_not_found: 404, channel_not_found: 404,
  not_in_channel: 403, forbidden: 403, invalid_args: 400, no_text: 400, msg_too_long: 400, idempotency_conflict: 409 };

async function handleRest(hub, req, res) {
  const st = hub.st;
  const reply = (status, obj) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
  const fail = (e) => { const r = errorReply(0, e); delete r.re; reply(STATUS[r.error] || 500, r); };
  const body = await readJson(req);
  if (body === null) return fail(new ProtoError('invalid_message', 'not JSON'));
  try {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'POST' && url.pathname === '/api/v1/login') return reply(200, login(st, body));
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization || '');
    const uid = auth && st.d.tokens[auth[1]];
    if (!uid) throw new ProtoError('not_authed', 'bearer token required');
    const tenant = st.user(uid).tenant;
    const m = /^\/api\/v1\/channels\/(\d+)\/messages$/.exec(url.pathname);
    if (req.method === 'POST' && m) {
      const { reply: r, msg } = st.send(uid, tenant, {
        ch: Number(m[1]), client_msg_id: body.client_msg_id || crypto.randomUUID(), body: body.body, ref: body.ref,
      });
      if (msg) hub.messageEvent(msg);
      return reply(200, r);
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/channels') {
      const list = st.d.channels.filter((c) => c.tenant === tenant && c.memberIds.includes(uid)).map((c) => st.channelView(c, uid));
      return reply(200, { channels: list });
    }
    reply(404, { ok: false, error: 'unknown_op', message: 'no such endpoint' });
  } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- main

function main() {
  const args = parseArgs(process.argv.slice(2));
  fs.mkdirSync(args.data, { recursive: true });
  const st = new State(path.join(args.data, 'mock-state.json'));
  if (args.seedDemo) seedDemo(st);
  const hub = new Hub(st);
  const webRoot = path.resolve(args.web || WEB_ROOT);
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/api/')) handleRest(hub, req, res);
    else serveStatic(webRoot, req, res);
  });
  server.on('upgrade', (req, socket) => {
    if (!req.url.startsWith('/ws')) { socket.destroy(); return; }
    const sess = { uid: 0, tenant: 0, token: null, send: null };
    const ws = acceptSocket(req, socket, (text) => {
      let msg;
      try { msg = JSON.parse(text); } catch { ws.send({ re: 0, ok: false, error: 'invalid_message', message: 'not JSON', retriable: false }); return; }
      const rid = Number.isInteger(msg?.rid) ? msg.rid : 0;
      try {
        ws.send({ re: rid, ok: true, ...handleOp(hub, sess, msg) });
      } catch (e) { ws.send(errorReply(rid, e)); }
    });
    if (!ws) return;
    sess.send = ws.send;
    hub.sessions.add(sess);
    socket.on('close', () => hub.sessions.delete(sess));
    socket.on('error', () => hub.sessions.delete(sess));
  });
  const [host, port] = args.http.split(/:(?=\d+$)/);
  server.listen(Number(port), host, () => console.log(`mock chorus on http://${host}:${port}/`));
  const stop = () => { for (const s of hub.sessions) s.send = () => {}; server.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
