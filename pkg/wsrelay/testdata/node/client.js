// Numbered-message client for pkg/wsrelay's tests, on npm's ws (an
// implementation independent of the relay and of coder/websocket).
// Usage: node client.js URL CLIENTS MESSAGES
// Each client sends MESSAGES numbered text messages (8 in flight) and
// checks every echo arrives once and in order; permessage-deflate is
// offered (ws's default for clients). Prints one JSON line of results;
// exits 1 if anything was lost, doubled, reordered or closed early.
'use strict';
const WebSocket = require('ws');

const [url, clients, messages] = [process.argv[2], +process.argv[3], +process.argv[4]];
const res = { clients, messages, ok: 0, mismatched: 0, closes: {}, errors: [] };
let done = 0;

function finish() {
  if (++done < clients) return;
  console.log(JSON.stringify(res));
  process.exit(res.ok === clients ? 0 : 1);
}

for (let c = 0; c < clients; c++) {
  const ws = new WebSocket(url, ['chat'], { perMessageDeflate: true });
  let sent = 0, got = 0, failed = false;
  const send = () => {
    while (sent < messages && sent - got < 8) {
      // every tenth message is long enough to be compressed by the relay
      const pad = sent % 10 === 0 ? ' ' + 'x'.repeat(300) : '';
      ws.send(`c${c} m${sent}${pad}`);
      sent++;
    }
  };
  ws.on('open', send);
  ws.on('message', (data) => {
    const want = `c${c} m${got}`;
    const s = data.toString();
    if (!s.startsWith(want) || (s.length > want.length && s[want.length] !== ' ')) {
      if (!failed) res.errors.push(`client ${c}: echo ${got} = ${s.slice(0, 40)}; want ${want}`);
      failed = true;
      res.mismatched++;
    }
    got++;
    if (got === messages) {
      ws.close(1000, 'done');
      return;
    }
    // a short pause now and then, so moves land mid-stream
    if (got % 50 === 0) setTimeout(send, 2); else send();
  });
  ws.on('close', (code) => {
    res.closes[code] = (res.closes[code] || 0) + 1;
    if (got === messages && !failed && code === 1000) res.ok++;
    else if (got !== messages) res.errors.push(`client ${c}: closed ${code} after ${got}/${messages} echoes`);
    finish();
  });
  ws.on('error', (err) => { res.errors.push(`client ${c}: ${err.message}`); });
}
