// The page's one socket to the room's agent (same origin, the session cookie). It comes back by
// itself after any drop, sooner at first and then every 10 s; a socket silent for 40 s counts
// as dropped (the agent answers the ping sent every 15 s).

const PING_MS = 15000;
const SILENT_MS = 40000;
const MAX_DELAY_MS = 10000;

export class AgentLink {
  /** `on` = {message(m), open(), down(code)}. */
  constructor(on) {
    this.on = on;
    this.ws = null;
    this.delay = 500;
    this.lastHeard = 0;
    this.pinger = null;
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/signalling`);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.lastHeard = Date.now();
      this.pinger = setInterval(() => this.keepAlive(), PING_MS);
      this.on.open();
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (message && typeof message.type === 'string') this.on.message(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      this.on.down(event.code);
      if (event.code === 4409) return;   // another screen took over: stay stopped
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    };
  }

  keepAlive() {
    if (Date.now() - this.lastHeard > SILENT_MS) {
      if (this.ws) this.ws.close();
      return;
    }
    this.send({ type: 'ping' });
  }

  /** Send a message to the agent (dropped while the socket is down: the call recovers). */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }
}
