// A driver of examples/websocket-resume/zd-resume.js for ../../ws_resume_test.go:
// it runs resumable sessions through a real zd-queue on npm's ws or Node's own
// WebSocket (undici), and reports what each session saw.
//
// Usage: node [--experimental-websocket] wsresume.js
// Commands on stdin, one JSON object a line:
//   {"op":"open","id":ID,"url":U,"impl":"ws"|"global","headers":{...},
//    "reconnect":bool,"protocols":[...],"send":{"count":C,"every":MS},"expect":N}
//        open a session; send C numbered messages "ID cI" every MS ms (they go
//        on while the connection is down: the helper queues them); once N
//        backend messages came, report "done"
//   {"op":"resume","id":ID,"from":ID2,"url":U,"impl":...,"headers":{...}}
//        a second helper coming back to ID2's session with ID2's secret and
//        counts (as a page reloaded would); ID2 is left alone. With
//        "secret":S instead of "from", a resume of S from 0.
//   {"op":"send","id":ID,"count":N}  N more numbered messages at once
//        ("maxQueued" on open bounds the helper's resend queue)
//   {"op":"reconnect","id":ID}   {"op":"close","id":ID}   {"op":"exit"}
// Events on stdout, one JSON object a line: {"id","ev", ...} for each helper
// event except message (every 100th message is a "progress"), and "done":
// {"id","ev":"done","received","sent","echoes","mismatched","bad":[...]}.
// The backend numbers every message it sends "s<k> ..." and echoes "s<k> echo
// <message>"; each one must be the next in number, and the echoes must be
// exactly the messages sent, in order: once each.
'use strict';
const path = require('path');
const readline = require('readline');
const { ResumableSocket } = require(path.join(__dirname, '../../../examples/websocket-resume/zd-resume.js'));

const sessions = {};

function out(o) { process.stdout.write(JSON.stringify(o) + '\n'); }

function impl(name) {
  if (name === 'global') {
    if (typeof WebSocket !== 'function') throw new Error('no global WebSocket (Node 22, or --experimental-websocket)');
    return WebSocket;
  }
  return require('ws');
}

function start(cmd) {
  const id = cmd.id;
  const st = { id, sent: 0, echoes: 0, mismatched: 0, bad: [], done: false, timer: null, s: null };
  sessions[id] = st;
  const opts = { WebSocket: impl(cmd.impl), protocols: cmd.protocols || [], reconnect: cmd.reconnect !== false,
    minDelay: 50, maxDelay: 500, maxQueued: cmd.maxQueued };
  if (cmd.headers) {
    opts.wsOptions = { headers: cmd.headers };
  }
  if (cmd.from) {
    const f = sessions[cmd.from].s;
    opts.resume = { secret: f.secret, received: f.received, sent: f.sent };
  } else if (cmd.secret) {
    opts.resume = { secret: cmd.secret, received: cmd.received || 0, sent: 0 };
  }
  const s = new ResumableSocket(cmd.url, opts);
  st.s = s;
  const bad = (m) => { st.mismatched++; if (st.bad.length < 10) st.bad.push(m); };
  for (const ev of ['open', 'drop', 'resumed', 'refused', 'gap', 'close', 'error']) {
    s.on(ev, (e) => {
      out(Object.assign({ id, ev, received: s.received, sent: s.sent, state: s.state }, e));
      if (ev === 'open' && cmd.send) sendLoop(st, cmd.send);
      if (ev === 'close') clearInterval(st.timer);
    });
  }
  s.on('message', (e) => {
    const text = typeof e.data === 'string' ? e.data : Buffer.from(e.data).toString();
    const sp = text.indexOf(' ');
    const num = sp < 0 ? text : text.slice(0, sp);
    if (num !== 's' + e.n) bad(`message ${e.n}: ${text.slice(0, 60)}`);
    const rest = sp < 0 ? '' : text.slice(sp + 1);
    if (rest.startsWith('echo ')) {
      const want = `${id} c${st.echoes}`;
      if (rest.slice(5) !== want) bad(`echo ${st.echoes}: ${rest.slice(5, 60)}; want ${want}`);
      st.echoes++;
    }
    if ((e.n + 1) % 100 === 0) out({ id, ev: 'progress', received: s.received, sent: s.sent });
    if (cmd.expect && s.received === cmd.expect && !st.done) {
      st.done = true;
      out({ id, ev: 'done', received: s.received, sent: s.sent, echoes: st.echoes, mismatched: st.mismatched, bad: st.bad,
        secretLength: s.secret.length, queued: s.queue.length });
    }
  });
}

function sendLoop(st, send) {
  let i = 0;
  st.timer = setInterval(() => {
    if (i >= send.count || st.s.state === 'closed' || st.s.state === 'closing') {
      clearInterval(st.timer);
      return;
    }
    st.s.send(`${st.id} c${i++}`);
  }, send.every);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
    switch (cmd.op) {
      case 'open':
      case 'resume':
        start(cmd);
        break;
      case 'send': {
        const st = sessions[cmd.id];
        for (let i = 0; i < cmd.count; i++) st.s.send(`${cmd.id} c${st.s.sent}`);
        out({ id: cmd.id, ev: 'sent', sent: st.s.sent, queued: st.s.queue.length });
        break;
      }
      case 'reconnect':
        sessions[cmd.id].s.reconnect();
        break;
      case 'close':
        sessions[cmd.id].s.close(1000, 'done');
        break;
      case 'exit':
        process.exit(0);
        break;
      default:
        throw new Error('unknown op ' + cmd.op);
    }
  } catch (e) {
    out({ id: cmd && cmd.id, ev: 'driver-error', message: String(e && e.stack || e) });
  }
});
rl.on('close', () => process.exit(0));
