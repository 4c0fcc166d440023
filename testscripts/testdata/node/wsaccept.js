// Numbered-message WebSocket clients on npm's ws (independent of zd-queue's
// relay, of coder/websocket and of gorilla/websocket) for the acceptance
// tests in ../../ws_accept_test.go and ../../ws_accept_h2_test.go. The
// module comes from pkg/wsrelay/testdata/node (npm ci there; the tests set
// NODE_PATH).
//
// Usage: node wsaccept.js URL CLIENTS INTERVAL_MS PREFIX [PER_CONN]
// URL ws+unix://SOCK:/PATH: RFC 6455 over HTTP/1.1, one connection each.
// URL h2+unix://SOCK:/PATH: RFC 8441 over HTTP/2 over TLS (any
// certificate) on the unix socket SOCK: Node's own http2 client sends the
// extended CONNECT once the server's SETTINGS allowed it, and ws speaks on
// the stream; PER_CONN sessions share each HTTP/2 connection.
// Each client sends a numbered message every INTERVAL_MS (open loop, so a
// lost message never stalls it) and checks every echo: the exact payload,
// once, in order. Commands on stdin, answers on stdout:
//   mark           end a phase; answers "marked" once every message sent
//                  before it was echoed or overtaken (120 s bound)
//   sync           answers "synced" once every open session had an echo
//                  since (120 s bound)
//   kill FROM TO   a kill window in unix ms (lost messages sent inside
//                  one are explained by it)
//   stop           stop sending, wait for the last echoes (60 s), close
//                  with 1000, print one JSON line of results, exit
// "ready" comes once every session is open (or failed to open).
// The books are the same as testscripts' tally (ws_tally_test.go).
'use strict';
const http2 = require('http2');
const tls = require('tls');
const WebSocket = require('ws');
const { PerMessageDeflate, extension } = WebSocket;
const readline = require('readline');

const [url, clients, interval, prefix] = [process.argv[2], +process.argv[3], +process.argv[4], process.argv[5]];
const perConn = +(process.argv[6] || 1);
const res = { sessions: clients, opened: 0, closes: {}, sent: 0, echoed: 0, lost: [], lost_unexplained: 0,
  duplicated: 0, reordered: 0, mismatched: 0, errors: [] };
const kills = [];
const sessions = [];
let stopping = false;
let settled = 0; // sessions open or failed to open
const h2conns = []; // HTTP/2 connections (promises), perConn sessions each

function settle() { if (++settled === clients) console.log('ready'); }

function msg(id, n) {
  const pad = n % 10 === 0 ? 300 : n % 23;
  return `${id} m${n} ${'x'.repeat(pad)}`;
}

function err(s) { if (res.errors.length < 20) res.errors.push(s); }

for (let c = 0; c < clients; c++) {
  const id = `${prefix}${c}`;
  const s = { id, sentAt: [], got: [], maxGot: -1, dup: 0, reordered: 0, mismatched: 0, bounds: [],
    open: false, ended: false, timer: null, echoes: 0, syncAt: 0 };
  sessions.push(s);
  if (url.startsWith('h2+unix://')) openH2(c, s);
  else attach(s, new WebSocket(url, { perMessageDeflate: true }));
}

// attach runs session s on ws, which emits 'open' when it is open.
function attach(s, ws) {
  const id = s.id;
  s.ws = ws;
  ws.on('open', () => {
    s.open = true;
    res.opened++;
    settle();
    const tick = () => {
      if (stopping || s.ended) return;
      s.sentAt.push(Date.now());
      s.got.push(false);
      ws.send(msg(id, s.sentAt.length - 1));
    };
    setTimeout(() => { tick(); s.timer = setInterval(tick, interval); }, Math.random() * interval);
  });
  ws.on('message', (data) => {
    const p = data.toString();
    const m = /^\S+ m(\d+) /.exec(p);
    const n = m ? +m[1] : -1;
    if (!p.startsWith(id + ' ') || n < 0 || n >= s.sentAt.length || p !== msg(id, n)) {
      s.mismatched++;
      err(`${id}: echo ${p.slice(0, 40)} is no message sent`);
      return;
    }
    if (s.got[n]) s.dup++;
    else if (n < s.maxGot) s.reordered++;
    s.got[n] = true;
    s.echoes++;
    s.maxGot = Math.max(s.maxGot, n);
  });
  ws.on('close', (code) => {
    if (!s.open) settle();
    s.ended = true;
    if (s.timer) clearInterval(s.timer);
    if (!stopping || code !== 1000) {
      res.closes[code] = (res.closes[code] || 0) + 1;
      err(`${id}: closed ${code} ${stopping ? 'while stopping' : 'during the run'}`);
    }
  });
  ws.on('error', (e) => { err(`${id}: ${e.message}`); });
}

// h2conn is the HTTP/2 connection (a promise of it, once the server's
// SETTINGS allowed extended CONNECT) that client c shares with the other
// clients of its group of perConn.
function h2conn(c) {
  const k = Math.floor(c / perConn);
  if (!h2conns[k]) {
    const [sock, path] = url.slice('h2+unix://'.length).split(':');
    h2conns[k] = new Promise((resolve, reject) => {
      const session = http2.connect('https://zd', {
        createConnection: () => tls.connect({ path: sock, servername: 'zd', ALPNProtocols: ['h2'], rejectUnauthorized: false }),
      });
      session.on('error', (e) => { err(`h2 connection ${k}: ${e.message}`); reject(e); });
      session.on('goaway', (code) => { err(`h2 connection ${k}: GOAWAY ${code}`); });
      session.once('remoteSettings', (settings) => {
        if (settings.enableConnectProtocol) resolve({ session, path });
        else reject(new Error('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL'));
      });
    });
  }
  return h2conns[k];
}

// openH2 opens session s as an RFC 8441 extended CONNECT on its HTTP/2
// connection, permessage-deflate offered, and runs it with ws once the
// server answered 200.
function openH2(c, s) {
  const fail = (why) => {
    err(`${s.id}: ${why}`);
    res.closes.refused = (res.closes.refused || 0) + 1;
    s.ended = true;
    settle();
  };
  h2conn(c).then(({ session, path }) => {
    const pmd = new PerMessageDeflate({}, false);
    const req = session.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'https',
      ':path': `/${path.replace(/^\//, '')}?c=${c}`,
      ':authority': 'zd',
      'sec-websocket-version': '13',
      'sec-websocket-extensions': extension.format({ [PerMessageDeflate.extensionName]: pmd.offer() }),
    });
    let answered = false;
    req.on('error', (e) => { if (!answered) fail(`stream: ${e.message}`); });
    req.on('response', (headers) => {
      answered = true;
      if (headers[':status'] !== 200) {
        fail(`extended CONNECT answered ${headers[':status']}`);
        return;
      }
      // ws builds a client only from a URL; this is the server-side path
      // (null) with a client's settings: _isServer false makes it mask and
      // expect no mask (as pkg/proxy/testdata/node/h2client.js does).
      const ws = new WebSocket(null, undefined, { autoPong: true, closeTimeout: 30000 });
      ws._isServer = false;
      const ext = headers['sec-websocket-extensions'] || '';
      if (ext) {
        const offers = extension.parse(ext);
        if (offers[PerMessageDeflate.extensionName]) {
          pmd.accept(offers[PerMessageDeflate.extensionName]);
          ws._extensions[PerMessageDeflate.extensionName] = pmd;
        }
      }
      attach(s, ws);
      ws.setSocket(req, Buffer.alloc(0), { maxPayload: 100 << 20 });
    });
  }, (e) => fail(`h2 connection: ${e.message}`));
}

// waitUntil polls ok every 50 ms until it holds or bound ms pass.
function waitUntil(ok, bound, done) {
  const deadline = Date.now() + bound;
  const poll = () => {
    if (ok()) return done(true);
    if (Date.now() > deadline) return done(false);
    setTimeout(poll, 50);
  };
  poll();
}

const caughtUp = (s) => s.ended || s.bounds.length === 0 || s.maxGot + 1 >= s.bounds[s.bounds.length - 1];

function report() {
  for (const s of sessions) {
    res.sent += s.sentAt.length;
    res.duplicated += s.dup;
    res.reordered += s.reordered;
    res.mismatched += s.mismatched;
    while (res.lost.length < s.bounds.length + 1) res.lost.push(0);
    let phase = 0;
    for (let n = 0; n < s.got.length; n++) {
      while (phase < s.bounds.length && n >= s.bounds[phase]) phase++;
      if (s.got[n]) { res.echoed++; continue; }
      res.lost[phase]++;
      if (!kills.some((k) => s.sentAt[n] >= k.from && s.sentAt[n] <= k.to)) res.lost_unexplained++;
    }
  }
  console.log(JSON.stringify(res));
  process.exit(0);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const w = line.trim().split(/\s+/);
  if (w[0] === 'mark') {
    for (const s of sessions) s.bounds.push(s.sentAt.length);
    waitUntil(() => sessions.every(caughtUp), 120000, (ok) => console.log(ok ? 'marked' : 'marked late'));
  } else if (w[0] === 'sync') {
    for (const s of sessions) s.syncAt = s.echoes;
    waitUntil(() => sessions.every((s) => s.ended || s.echoes > s.syncAt), 120000, (ok) => console.log(ok ? 'synced' : 'synced late'));
  } else if (w[0] === 'kill') {
    kills.push({ from: +w[1], to: +w[2] });
  } else if (w[0] === 'stop') {
    stopping = true;
    for (const s of sessions) if (s.timer) clearInterval(s.timer);
    waitUntil(() => sessions.every((s) => s.ended || s.maxGot + 1 >= s.sentAt.length), 60000, () => {
      for (const s of sessions) if (!s.ended) s.ws.close(1000, 'done');
      waitUntil(() => sessions.every((s) => s.ended), 30000, report);
    });
  }
});
