/*
 * zd-resume.js: a resumable WebSocket session through zd-queue, for
 * browsers and Node (>= 20). No dependencies. The contract it speaks is
 * docs/websocket.md ("Resumable sessions").
 *
 * Browser:   <script src="zd-resume.js"></script>  (window.ZdResume)
 * Node:      const { ResumableSocket } = require('./zd-resume.js');
 *            new ResumableSocket(url, { WebSocket: require('ws'),
 *              wsOptions: { headers: { Cookie: 'sid=42' }, origin: 'https://app.example' } });
 *            or Node's own WebSocket (Node 22, or node --experimental-websocket
 *            on Node 20): { WebSocket: WebSocket, wsOptions: { headers: {...} } }.
 *
 *   const s = new ZdResume.ResumableSocket('wss://app.example/ws', { protocols: ['chat'] });
 *   s.on('message', (ev) => console.log(ev.n, ev.data));
 *   s.send('hello');          // kept until zd-queue confirms it has it
 *
 * What it does: it offers zd-resume.SECRET (128 random bits it chose; it
 * never logs the secret) when it opens the session, counts the backend's
 * messages it delivered, and when the connection drops (close 1006, no
 * Close frame) it reconnects with zd-resume.SECRET.RECEIVED until zd-queue's
 * resume window passes. zd-queue's answer says how many of this client's
 * messages it has: those are dropped from the resend queue and the rest
 * are sent again, in order, before anything newer; the backend's messages
 * this client missed are replayed by zd-queue. So both directions are
 * exactly-once across drops.
 *
 * Events (s.on(type, fn)):
 *   open     {window, protocol}      the session started (window: seconds)
 *   message  {data, n}               a backend message; n counts from 0
 *   drop     {code, reason, attempt} the connection dropped; reconnecting
 *   resumed  {have, replay, resent}  back: zd-queue had `have` of our
 *                                    messages, replays `replay`, we resent `resent`
 *   refused  {reason, code, detail, closed}
 *                                    zd-queue refused (docs/websocket.md lists
 *                                    reasons and codes); the session is over
 *                                    unless reason is "busy" (retried)
 *   gap      {direction, reason, lost}
 *                                    messages may be missing: "to-client" when
 *                                    a resume was refused (what the backend sent
 *                                    since is gone), "to-backend" when messages
 *                                    of ours are neither with zd-queue nor in our
 *                                    queue (lost: how many; a bounded queue)
 *   close    {code, reason}          the session is over; nothing more comes
 *   error    {message}
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.ZdResume = factory();
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  // Refusal reasons by Close code (docs/websocket.md).
  const REFUSALS = {
    4400: 'malformed', 4403: 'credentials', 4404: 'unknown', 4406: 'subprotocol',
    4408: 'expired', 4409: 'conflict', 4410: 'ended', 4416: 'gap', 4501: 'off', 4503: 'busy',
  };
  const ABC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

  // base64url without padding, as zd-queue wants the secret.
  function base64url(b) {
    let s = '';
    let i = 0;
    for (; i + 2 < b.length; i += 3) {
      const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
      s += ABC[(n >> 18) & 63] + ABC[(n >> 12) & 63] + ABC[(n >> 6) & 63] + ABC[n & 63];
    }
    const rest = b.length - i;
    if (rest > 0) {
      const n = (b[i] << 16) | (rest === 2 ? b[i + 1] << 8 : 0);
      s += ABC[(n >> 18) & 63] + ABC[(n >> 12) & 63] + (rest === 2 ? ABC[(n >> 6) & 63] : '');
    }
    return s;
  }

  // newSecret returns 16 random bytes (128 bits) from the platform's CSPRNG
  // in base64url: 22 characters.
  function newSecret() {
    const c = globalThis.crypto;
    if (!c || typeof c.getRandomValues !== 'function') {
      throw new Error('zd-resume: no crypto.getRandomValues (a browser, or Node >= 19, has it)');
    }
    return base64url(c.getRandomValues(new Uint8Array(16)));
  }

  function sizeOf(data) {
    if (typeof data === 'string') return data.length * 3; // UTF-8, at most
    if (data && typeof data.byteLength === 'number') return data.byteLength;
    if (data && typeof data.size === 'number') return data.size; // Blob
    return 0;
  }

  class ResumableSocket {
    /**
     * @param {string} url ws:// or wss:// URL (through zd-queue)
     * @param {object} [opts]
     *   protocols      the app's subprotocols (zd-queue offers them to the backend)
     *   WebSocket      the constructor (default: globalThis.WebSocket)
     *   wsOptions      a third constructor argument, for npm ws (headers, origin,
     *                  perMessageDeflate) or Node's WebSocket ({headers}: merged
     *                  with {protocols} into its second argument)
     *   binaryType     'arraybuffer' (default) or what the WebSocket supports
     *   reconnect      false: on a drop emit 'drop' and wait for reconnect()
     *   minDelay, maxDelay  reconnect backoff in ms (100, 5000)
     *   window         seconds to keep trying before the first answer told
     *                  zd-queue's window (120)
     *   connectTimeout ms a connection may take to bring zd-queue's answer
     *                  before it counts as dropped (15000)
     *   maxQueued, maxQueuedBytes  bound the resend queue (10000 messages,
     *                  16 MiB): past it the oldest are forgotten, and a resume
     *                  that needed them emits 'gap' to-backend
     *   resume         {secret, received, sent}: come back to a session another
     *                  ResumableSocket (say, before a page reload) had; its
     *                  unconfirmed messages are not in this one's queue
     */
    constructor(url, opts) {
      opts = opts || {};
      this.url = url;
      this.protocols = (opts.protocols || []).slice();
      this.WS = opts.WebSocket || globalThis.WebSocket;
      if (typeof this.WS !== 'function') {
        throw new Error('zd-resume: no WebSocket here: pass { WebSocket: require("ws") } (npm ws), or run Node 22 or node --experimental-websocket');
      }
      this.wsOptions = opts.wsOptions;
      this.binaryType = opts.binaryType || 'arraybuffer';
      this.autoReconnect = opts.reconnect !== false;
      this.minDelay = opts.minDelay || 100;
      this.maxDelay = opts.maxDelay || 5000;
      this.window = opts.window || 120;
      this.connectTimeout = opts.connectTimeout || 15000;
      this.maxQueued = opts.maxQueued || 10000;
      this.maxQueuedBytes = opts.maxQueuedBytes || 16 << 20;

      this.received = 0; // backend messages delivered to the app
      this.sent = 0; // messages the app sent; the next one is numbered this
      this.queue = []; // {data, size}: ours from number queueBase on, maybe not with zd-queue
      this.queueBase = 0;
      this.queuedBytes = 0;
      this.protocol = '';
      this.state = 'connecting'; // connecting, open, dropped, closing, closed
      this.handlers = {};
      this.ws = null;
      this.answered = false; // this connection's first message (the answer) came
      this.started = false; // a session exists (an answer "new" or "resumed" came once)
      this.attempt = 0;
      this.dropAt = 0;
      this.timer = null;
      this.connectTimer = null;
      this.refusal = null;
      if (opts.resume) {
        this.secret = opts.resume.secret;
        this.received = opts.resume.received || 0;
        this.sent = this.queueBase = opts.resume.sent || 0;
        this.started = true;
        this.dropAt = Date.now();
        this._connect(true);
      } else {
        this.secret = newSecret();
        this._connect(false);
      }
    }

    on(type, fn) {
      (this.handlers[type] = this.handlers[type] || []).push(fn);
      return this;
    }

    off(type, fn) {
      const l = this.handlers[type];
      if (l) this.handlers[type] = l.filter((f) => f !== fn);
      return this;
    }

    _emit(type, ev) {
      const l = this.handlers[type];
      if (!l) return;
      for (const fn of l.slice()) {
        try {
          fn(ev);
        } catch (e) {
          setTimeout(() => { throw e; }, 0); // the app's bug, not ours: report it, carry on
        }
      }
    }

    /** send queues data and sends it when connected; it is kept until a
     *  resume's answer says zd-queue has it. */
    send(data) {
      if (this.state === 'closing' || this.state === 'closed') {
        throw new Error('zd-resume: the session is ' + this.state);
      }
      const size = sizeOf(data);
      this.queue.push({ data, size });
      this.queuedBytes += size;
      this.sent++;
      while (this.queue.length > 1 && (this.queue.length > this.maxQueued || this.queuedBytes > this.maxQueuedBytes)) {
        this.queuedBytes -= this.queue.shift().size;
        this.queueBase++;
      }
      if (this.state === 'open') this.ws.send(data);
    }

    /** close ends the session (zd-queue closes the backend side too). */
    close(code, reason) {
      if (this.state === 'closed' || this.state === 'closing') return;
      clearTimeout(this.timer);
      this.closeWith = [code || 1000, reason || ''];
      if (!this.ws) {
        this._end(code || 1000, reason || 'closed by the client');
        return;
      }
      const open = this.state === 'open';
      this.state = 'closing';
      // A connection still in its handshake closes once its answer came,
      // so that zd-queue ends the session now instead of holding it for
      // the window.
      if (open) this.ws.close(code || 1000, reason || '');
    }

    /** reconnect comes back now: after a 'drop' with reconnect: false, or
     *  when the app knows the connection is dead before the browser does
     *  (zd-queue closes the old connection when the resume arrives). */
    reconnect() {
      if (this.state === 'closing' || this.state === 'closed') return;
      clearTimeout(this.timer);
      if (!this.dropAt) this.dropAt = Date.now();
      this._detach();
      this._connect(true);
    }

    _token(resume) {
      let t = 'zd-resume.' + this.secret;
      if (resume) t += '.' + this.received;
      return t;
    }

    _connect(resume) {
      this.state = this.started || resume ? 'dropped' : 'connecting';
      this.answered = false;
      this.refusal = null;
      const protos = this.protocols.concat([this._token(resume)]);
      let ws;
      try {
        ws = this._open(protos);
      } catch (e) {
        this._emit('error', { message: 'zd-resume: ' + e.message });
        this._retry(1006, e.message);
        return;
      }
      this.ws = ws;
      try {
        ws.binaryType = this.binaryType;
      } catch (e) { /* a WebSocket without binaryType */ }
      ws.onmessage = (ev) => { if (ws === this.ws) this._onMessage(ev.data); };
      ws.onclose = (ev) => { if (ws === this.ws) this._onClose(ev.code, ev.reason); };
      // A close event should follow every error; Node 20's WebSocket
      // (undici) sends none when the connection is reset in its handshake,
      // and stays CONNECTING. So an error is a drop unless a close came.
      ws.onerror = () => {
        setTimeout(() => this._abandon(ws, 'an error and no close event'), 1000);
      };
      // A handshake or an answer that never comes (a dead network) is a drop.
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => { if (!this.answered) this._abandon(ws, 'no answer within ' + this.connectTimeout + ' ms'); }, this.connectTimeout);
    }

    // _abandon treats ws as dropped if it is still the current connection.
    _abandon(ws, why) {
      if (ws !== this.ws) return;
      this._detach();
      try {
        ws.close();
      } catch (e) { /* already closing */ }
      this._onClose(1006, why);
    }

    _open(protos) {
      const o = this.wsOptions;
      if (!o) return new this.WS(this.url, protos);
      if (this.WS === globalThis.WebSocket && typeof window === 'undefined') {
        // Node's own WebSocket takes {protocols, headers} as its second argument.
        return new this.WS(this.url, Object.assign({}, o, { protocols: protos }));
      }
      return new this.WS(this.url, protos, o);
    }

    _detach() {
      const ws = this.ws;
      this.ws = null;
      if (!ws) return;
      ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }

    _onMessage(data) {
      if (this.answered) {
        const n = this.received++;
        this._emit('message', { data, n });
        return;
      }
      this.answered = true;
      if (this.state === 'closing') {
        this.ws.close(this.closeWith[0], this.closeWith[1]);
        return;
      }
      let a = null;
      try {
        if (typeof data === 'string') a = JSON.parse(data);
      } catch (e) { /* not an answer */ }
      if (!a || typeof a['zd-resume'] !== 'string') {
        this._emit('error', { message: 'zd-resume: the first message is not zd-queue\'s answer: this server does not resume sessions' });
        this.state = 'closing';
        this.ws.close(1002, 'no zd-resume answer');
        return;
      }
      switch (a['zd-resume']) {
        case 'new':
          this.window = a.window || this.window;
          this._onAttached(0);
          this._emit('open', { window: this.window, protocol: this.protocol });
          break;
        case 'resumed': {
          const resent = this._onAttached(a.have);
          if (resent >= 0) this._emit('resumed', { have: a.have, replay: a.replay, resent });
          break;
        }
        case 'refused':
          this.refusal = { reason: a.reason, code: a.code, detail: a.detail, closed: a.closed };
          break; // the Close follows: handled there
        default:
          this._emit('error', { message: 'zd-resume: unknown answer ' + a['zd-resume'] });
      }
    }

    // _onAttached: zd-queue has `have` of our messages. Forget those, send
    // the rest again in order; returns how many were resent, or -1 when
    // the count makes no sense (the session is then closed).
    _onAttached(have) {
      this.protocol = this.ws.protocol && this.ws.protocol.indexOf('zd-resume.') !== 0 ? this.ws.protocol : '';
      if (!(have >= 0) || have > this.sent) {
        this._emit('error', { message: 'zd-resume: zd-queue says it has ' + have + ' of our messages; we sent ' + this.sent });
        this.state = 'closing';
        this.ws.close(1002, 'bad have');
        return -1;
      }
      if (have < this.queueBase) {
        this._emit('gap', { direction: 'to-backend', reason: 'queue-bound', lost: this.queueBase - have });
        have = this.queueBase;
      }
      while (this.queueBase < have) {
        this.queuedBytes -= this.queue.shift().size;
        this.queueBase++;
      }
      this.started = true;
      this.state = 'open';
      this.attempt = 0;
      this.dropAt = 0;
      for (const m of this.queue) this.ws.send(m.data);
      return this.queue.length;
    }

    _onClose(code, reason) {
      const ref = this.refusal;
      clearTimeout(this.connectTimer);
      this._detach();
      if (this.state === 'closing' || this.state === 'closed') {
        this._end(code, reason);
        return;
      }
      if (ref || REFUSALS[code]) {
        const r = ref || { reason: REFUSALS[code], code, detail: reason };
        if (r.reason === 'busy') {
          this._retry(code, reason);
          return;
        }
        if (r.reason === 'unknown' && !this.started) {
          // Our first connection dropped before its answer and zd-queue
          // never made the session: start it now, with a fresh secret.
          this.secret = newSecret();
          this._connect(false);
          return;
        }
        this._emit('refused', r);
        if (this.started) this._emit('gap', { direction: 'to-client', reason: r.reason });
        this._end(code, reason);
        return;
      }
      if (code === 1006) {
        this._retry(code, reason);
        return;
      }
      // zd-queue or the backend ended the session (1000, 1011, 1012, 1013, ...).
      this._end(code, reason);
    }

    _retry(code, reason) {
      if (!this.dropAt) this.dropAt = Date.now();
      this.state = 'dropped';
      const attempt = ++this.attempt;
      this._emit('drop', { code, reason, attempt });
      if (Date.now() - this.dropAt > this.window * 1000) {
        this._emit('gap', { direction: 'to-client', reason: 'unreachable' });
        this._end(1006, 'zd-queue was not reachable within the resume window');
        return;
      }
      if (!this.autoReconnect) return;
      const d = Math.min(this.maxDelay, this.minDelay * Math.pow(2, Math.min(attempt - 1, 16)));
      this.timer = setTimeout(() => this._connect(true), attempt === 1 ? 0 : d / 2 + Math.random() * d / 2);
    }

    _end(code, reason) {
      if (this.state === 'closed') return;
      clearTimeout(this.timer);
      clearTimeout(this.connectTimer);
      this.state = 'closed';
      this._emit('close', { code, reason });
    }
  }

  return { ResumableSocket, newSecret, REFUSALS };
});
