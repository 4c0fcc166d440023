// Numbered-message WebSocket clients on npm's ws (independent of zd-queue's
// relay, of coder/websocket and of gorilla/websocket) for the acceptance
// test in ../../ws_accept_test.go. The module comes from
// pkg/wsrelay/testdata/node (npm ci there; the test sets NODE_PATH).
//
// Usage: node wsaccept.js URL CLIENTS INTERVAL_MS PREFIX
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
// The books are the same as testscripts' tally (ws_tally_test.go).
'use strict';
const WebSocket = require('ws');
const readline = require('readline');

const [url, clients, interval, prefix] = [process.argv[2], +process.argv[3], +process.argv[4], process.argv[5]];
const res = { sessions: clients, opened: 0, closes: {}, sent: 0, echoed: 0, lost: [], lost_unexplained: 0,
  duplicated: 0, reordered: 0, mismatched: 0, errors: [] };
const kills = [];
const sessions = [];
let stopping = false;

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
  const ws = new WebSocket(url, { perMessageDeflate: true });
  s.ws = ws;
  ws.on('open', () => {
    s.open = true;
    res.opened++;
    if (res.opened === clients) console.log('ready');
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
    s.ended = true;
    if (s.timer) clearInterval(s.timer);
    if (!stopping || code !== 1000) {
      res.closes[code] = (res.closes[code] || 0) + 1;
      err(`${id}: closed ${code} ${stopping ? 'while stopping' : 'during the run'}`);
    }
  });
  ws.on('error', (e) => { err(`${id}: ${e.message}`); });
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
