// Starts the server the tests run against: chorusd from CHORUS_BIN, or,
// without it, tests/e2e/mock-server.mjs (same command line). Both get
//   --data DIR --http 127.0.0.1:PORT --api tcp://127.0.0.1:PORT [--seed-demo]
// plus CHORUS_EXTRA_ARGS ({api} in it stands for the --api endpoint), and
// are ready when GET / answers and alice can log in.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../../..');
const MOCK = path.resolve(HERE, '../mock-server.mjs');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function usingMock() {
  return !process.env.CHORUS_BIN;
}

export class Server {
  constructor() {
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-e2e-'));
    this.proc = null;
    this.logFile = path.join(this.dataDir, 'server.log');
  }

  get url() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  // seed: pass --seed-demo (first start only; a restart reuses the data dir)
  async start({ seed = true } = {}) {
    this.httpPort ||= await freePort();
    this.apiPort ||= await freePort();
    const args = ['--data', this.dataDir, '--http', `127.0.0.1:${this.httpPort}`,
      '--api', `tcp://127.0.0.1:${this.apiPort}`];
    if (seed) args.push('--seed-demo');
    // extra chorusd options, e.g. CHORUS_EXTRA_ARGS="--verbose"
    args.push(...(process.env.CHORUS_EXTRA_ARGS || '').split(/\s+/).filter(Boolean)
      .map((a) => a.replaceAll('{api}', `tcp://127.0.0.1:${this.apiPort}`)));
    const [cmd, argv] = usingMock() ? [process.execPath, [MOCK, ...args]] : [process.env.CHORUS_BIN, args];
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn(cmd, argv, { cwd: REPO, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const proc = this.proc;
    let exited = null;
    proc.on('exit', (code, signal) => { exited = { code, signal }; });
    // ready when GET / answers and a demo user can log in (the seed may
    // still be writing the long history when the port is already open)
    const deadline = Date.now() + 90000;
    let webUp = false;
    let last = '';
    while (Date.now() < deadline) {
      if (exited) throw new Error(`server exited (${JSON.stringify(exited)}); log:\n${this.log()}`);
      try {
        if (!webUp) webUp = (await fetch(`${this.url}/`)).ok;
        if (webUp) {
          await restLogin(this.url, 'alice');
          return this;
        }
      } catch (err) {
        last = err.message;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`server not ready within 90 s (${webUp ? 'login failed' : 'GET / failed'}: ${last}); log:\n${this.log()}`);
  }

  // SIGKILL: a crash, nothing flushed on the way out
  async kill(signal = 'SIGKILL') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (proc.exitCode === null && !proc.signalCode) {
      proc.kill('SIGKILL');
      await gone;
    }
    this.proc = null;
  }

  async stop() {
    await this.kill('SIGTERM');
    if (!process.env.CHORUS_E2E_KEEP) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  log() {
    try {
      return fs.readFileSync(this.logFile, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }
}

// ---------------------------------------------------------------- REST

export async function restLogin(base, handle, password = 'chorus-demo', tenant = 'demo') {
  const res = await fetch(`${base}/api/v1/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenant, handle, password }),
  });
  const data = await res.json();
  if (!res.ok || !data.token) throw new Error(`login ${handle}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

export async function restPost(base, token, ch, body, clientMsgId = crypto.randomUUID()) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${base}/api/v1/channels/${ch}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ body, client_msg_id: clientMsgId }),
    });
    const data = await res.json().catch(() => ({}));
    if (res.ok && data.seq) return data;
    if (data.retriable && attempt < 20) {
      await new Promise((r) => setTimeout(r, data.retry_after_ms || 200));
      continue;
    }
    throw new Error(`post to ${ch}: ${res.status} ${JSON.stringify(data)}`);
  }
}
