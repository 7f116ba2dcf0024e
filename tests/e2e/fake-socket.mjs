// A scripted fake WebSocket for the unit tests of clients/js/rendezvous.js
// (client.test.mjs, client-party.test.mjs): no server, no browser. The test
// side accepts with a welcome, pushes server messages, drops the socket and
// reads what the client sent.

export class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }));
  }

  // Test side.
  accept(welcome) {
    this.readyState = 1;
    this.onopen?.({});
    this.push({ type: 'welcome', protocol: 1, resumed: false, room: null, heartbeat_interval_ms: 15000,
      heartbeat_timeout_ms: 45000, ice_servers: [{ urls: ['stun:stun.example.org:3478'] }], ...welcome });
  }

  push(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '', wasClean: false });
  }

  last() {
    return this.sent[this.sent.length - 1];
  }

  /** Answers the last request with `ok` and these fields. */
  ok(fields = {}) {
    this.push({ type: 'ok', rid: this.last().rid, ...fields });
  }
}

export const tick = () => new Promise((r) => setTimeout(r, 0));

export async function until(predicate, ms = 2000) {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
