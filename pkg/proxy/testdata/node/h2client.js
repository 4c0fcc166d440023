// RFC 8441 WebSocket client for pkg/proxy's tests: Node's own http2 client
// sends the extended CONNECT (only once the server's SETTINGS allowed it),
// and npm ws (independent of zd-queue and of coder/websocket) speaks RFC
// 6455 over the stream, with permessage-deflate negotiated.
// Usage: node h2client.js URL CLIENTS MESSAGES
// URL is http://HOST:PORT/PATH (h2c) or https://... (h2 over TLS, any
// certificate). All clients share one HTTP/2 connection. Each sends
// MESSAGES numbered text messages (8 in flight) and checks every echo
// arrives once and in order. Prints one JSON line of results; exits 1 if
// anything was lost, doubled, reordered or closed early.
'use strict';
const http2 = require('http2');
const WebSocket = require('ws');
const { PerMessageDeflate, extension } = WebSocket;

const [url, clients, messages] = [new URL(process.argv[2]), +process.argv[3], +process.argv[4]];
const res = { clients, messages, ok: 0, mismatched: 0, closes: {}, errors: [], protocols: {}, extensions: {} };
let done = 0;

function finish() {
  if (++done < clients) return;
  console.log(JSON.stringify(res));
  session.close();
  process.exit(res.ok === clients ? 0 : 1);
}

const session = http2.connect(url.origin, { rejectUnauthorized: false });
session.on('error', (err) => { res.errors.push(`session: ${err.message}`); });
session.once('remoteSettings', (settings) => {
  if (!settings.enableConnectProtocol) {
    res.errors.push('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL');
    done = clients - 1;
    finish();
    return;
  }
  for (let c = 0; c < clients; c++) open(c);
});

function open(c) {
  const pmd = new PerMessageDeflate({}, false);
  const req = session.request({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': url.protocol.slice(0, -1),
    ':path': `${url.pathname}?client=${c}`,
    ':authority': url.host,
    'sec-websocket-version': '13',
    'sec-websocket-protocol': 'chat, other',
    'sec-websocket-extensions': extension.format({ [PerMessageDeflate.extensionName]: pmd.offer() }),
    origin: url.origin,
  });
  req.on('error', (err) => { res.errors.push(`client ${c}: stream: ${err.message}`); });
  req.on('response', (headers) => {
    const status = headers[':status'];
    if (status !== 200) {
      res.errors.push(`client ${c}: extended CONNECT answered ${status}`);
      res.closes.refused = (res.closes.refused || 0) + 1;
      finish();
      return;
    }
    const proto = headers['sec-websocket-protocol'] || '';
    res.protocols[proto] = (res.protocols[proto] || 0) + 1;
    const ext = headers['sec-websocket-extensions'] || '';
    res.extensions[ext] = (res.extensions[ext] || 0) + 1;
    // ws builds a client only from a URL; this is the server-side path
    // (null) with a client's settings: autoPong and closeTimeout are its
    // client defaults, and _isServer makes it mask and expect no mask.
    const ws = new WebSocket(null, undefined, { autoPong: true, closeTimeout: 30000 });
    ws._isServer = false;
    ws._protocol = proto;
    if (ext) {
      const offers = extension.parse(ext);
      if (offers[PerMessageDeflate.extensionName]) {
        pmd.accept(offers[PerMessageDeflate.extensionName]);
        ws._extensions[PerMessageDeflate.extensionName] = pmd;
      }
    }
    ws.setSocket(req, Buffer.alloc(0), { maxPayload: 100 << 20 });
    run(c, ws);
  });
}

function run(c, ws) {
  let sent = 0, got = 0, failed = false;
  const send = () => {
    while (sent < messages && sent - got < 8) {
      // every tenth message is long enough to be compressed, both ways
      const pad = sent % 10 === 0 ? ' ' + 'x'.repeat(300) : '';
      ws.send(`c${c} m${sent}${pad}`, { compress: pad !== '' });
      sent++;
    }
  };
  send();
  ws.on('message', (data) => {
    const want = `echo c${c} m${got}`;
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
