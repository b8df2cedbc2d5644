// The WebSocket session: wake the server, connect, keep alive, reconnect and resume.
//
// A sleeping server (e.g. Render's free tier) answers its first request only once it has
// started, which can take tens of seconds: /health is polled with backoff first and the
// page says "waking up…" meanwhile. When the socket drops, the connection comes back with
// session_id, resume_token and the last event the page saw: its event_id (protocol 3;
// the server replays exactly the events after it) or, from an older server, the last
// audio chunk (last_turn_id, last_chunk_index). If it cannot resume (resume_failed), a
// fresh session starts.

const PING_EVERY_MS = 20000; // browsers cannot send WebSocket pings: {"event":"ping"}
const SILENT_LIMIT_MS = 50000; // no frame at all for this long: the link is dead
const IDLE_AFTER_MS = 240000; // stop keeping an unused tab's socket alive after this
const BACKOFF_MS = [300, 1000, 2000, 4000, 8000, 10000];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class VoiceConnection {
  /**
   * @param {object} o
   * @param {string} o.url        ws(s)://host/ws/voice
   * @param {string} o.healthUrl  http(s)://host/health
   * @param {object} o.params     query parameters of every connection (user_id, format…)
   * @param {() => object} o.resumePoint  {last_turn_id?, last_chunk_index?} to resume a
   *   protocol-2 server after (protocol 3 resumes after the last event_id received)
   * @param {(phase: string, detail?: string) => void} o.onPhase
   * @param {(event: string, data: object) => void} o.onEvent
   * @param {(kind: string, text: string) => void} o.onNotice
   */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.session = null; // {id, token, windowS, version, bargeIn} from `connected`
    this.lastEventId = null; // event_id of the last replayable event received
    this.phase = "offline";
    this.attempt = 0;
    this.resumeFailed = false;
    this.lastFrameAt = 0;
    this.lastPingAt = 0;
    this.lastActivityAt = Date.now();
    this.connecting = null;
    this.timer = null;
    this.stopped = false;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.phase === "connected";
  }

  setPhase(phase, detail = "") {
    this.phase = phase;
    this.onPhase(phase, detail);
  }

  /** Connect now unless already connected or connecting (also: after an idle close). */
  ensure() {
    this.lastActivityAt = Date.now();
    if (this.open || this.connecting) return this.connecting;
    this.stopped = false;
    this.connecting = this.connectLoop().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  send(event, data = {}) {
    if (!this.open) return false;
    this.lastActivityAt = Date.now();
    this.ws.send(JSON.stringify({ event, data }));
    return true;
  }

  sendAudio(buffer) {
    if (!this.open) return false;
    this.ws.send(buffer);
    return true;
  }

  /** Close the socket as a dropped link would end it: the page reconnects and resumes. */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the page");
  }

  async connectLoop() {
    while (!this.stopped) {
      const resuming = Boolean(this.session && this.session.token);
      const phase = this.attempt === 0 && !resuming ? "connecting" : "reconnecting";
      this.setPhase(phase);
      await this.waitForServer();
      if (this.phase === "waking") this.setPhase(phase, "the server is up");
      const outcome = await this.openSocket(resuming);
      if (outcome === "open") {
        this.attempt = 0;
        return;
      }
      if (outcome === "fatal") return;
      if (outcome === "fresh") continue; // resume refused: start a new session at once
      const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.setPhase("reconnecting", `retrying in ${(wait / 1000).toFixed(1)} s`);
      await sleep(wait);
    }
  }

  /** Poll /health until the server answers; "waking up…" while it takes its time. */
  async waitForServer() {
    const started = Date.now();
    for (let i = 0; ; i++) {
      const slow = setTimeout(() => this.setPhase("waking", "the server is starting"), 1200);
      const ok = await probe(this.healthUrl);
      clearTimeout(slow);
      if (ok) return;
      const seconds = Math.round((Date.now() - started) / 1000);
      this.setPhase("waking", `no answer yet (${seconds} s)`);
      await sleep(Math.min(500 * 1.5 ** i, 5000));
    }
  }

  openSocket(resuming) {
    const query = new URLSearchParams(this.params);
    if (resuming) {
      query.set("session_id", this.session.id);
      query.set("resume_token", this.session.token);
      if (this.session.version >= 3) {
        // exact: the server replays every event after this one (none seen: all of them)
        if (this.lastEventId) query.set("last_event_id", this.lastEventId);
      } else {
        for (const [key, value] of Object.entries(this.resumePoint())) {
          if (value !== null && value !== undefined) query.set(key, String(value));
        }
      }
    }
    return new Promise((resolve) => {
      const ws = new WebSocket(`${this.url}?${query}`);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.resumeFailed = false;
      let settled = false;
      const settle = (outcome) => {
        if (!settled) {
          settled = true;
          resolve(outcome);
        }
      };
      ws.onmessage = (message) => {
        this.lastFrameAt = Date.now();
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        const { event, data = {} } = frame;
        if (data.event_id) this.lastEventId = data.event_id;
        if (event === "connected") {
          this.onConnected(data, resuming);
          settle("open");
        } else if (event === "error" && data.code === "resume_failed") {
          this.resumeFailed = true;
        }
        this.onEvent(event, data);
      };
      ws.onclose = (close) => {
        if (this.ws === ws) this.ws = null;
        this.stopKeepAlive();
        if (!settled) {
          settle(this.afterFailedOpen(close));
          return;
        }
        this.afterClose(close);
      };
      ws.onerror = () => {}; // onclose follows with the code
    });
  }

  onConnected(data, resuming) {
    const previous = this.session;
    this.session = {
      id: data.session_id,
      token: data.resume_token || null,
      windowS: data.resume_window_seconds || 0,
      v2: "resume_token" in data, // a server with cancel, ping/pong and resume
      version: Number(data.protocol_version) || 1, // 3: event ids, exact resume
      bargeIn: data.barge_in === true, // speech over a reply interrupts it
      // the server pauses a reply under speech and cuts it only for words (protocol 4)
      confirmsBargeIn: data.barge_in_mode === "confirm",
    };
    const resumed = Boolean(resuming && data.resumed && previous && previous.id === data.session_id);
    if (!resumed) this.lastEventId = null; // a new session: nothing of it seen yet
    this.setPhase("connected", resumed ? "resumed" : "");
    if (previous && !resumed) {
      this.onNotice("warn", "Reconnected with a new session (the previous one could not resume).");
    } else if (resumed) {
      this.onNotice("info", "Reconnected: the session was resumed.");
    }
    this.startKeepAlive();
  }

  /** The socket closed before `connected`: what next? */
  afterFailedOpen(close) {
    if (this.resumeFailed || (close.code === 1008 && this.session && this.session.token)) {
      if (this.resumeFailed) this.onNotice("warn", "The session expired; starting a new one.");
      this.session = null;
      return "fresh";
    }
    if (close.code === 1008) {
      this.stopped = true;
      this.setPhase("failed", close.reason || "refused by the server");
      return "fatal";
    }
    return "retry";
  }

  afterClose(close) {
    if (this.stopped) {
      this.setPhase("offline");
      return;
    }
    if (close.code === 1000 && /idle/i.test(close.reason)) {
      // the server closed an unused socket: come back when the user does something
      this.setPhase("idle", "reconnects when you talk or type");
      return;
    }
    if (close.code === 1008) {
      this.stopped = true;
      this.setPhase("failed", close.reason || "refused by the server");
      return;
    }
    // 1006 dropped link, 1012 server restarting, 1013 full, 1011 error: resume
    this.ensure();
  }

  startKeepAlive() {
    this.stopKeepAlive();
    this.lastFrameAt = Date.now();
    this.timer = setInterval(() => this.keepAlive(), 5000);
  }

  stopKeepAlive() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  keepAlive() {
    if (!this.open || !this.session || !this.session.v2) return;
    const now = Date.now();
    if (now - this.lastActivityAt > IDLE_AFTER_MS && !this.busy()) return; // let it idle out
    if (now - this.lastFrameAt > SILENT_LIMIT_MS) {
      this.onNotice("warn", "No answer from the server; reconnecting.");
      this.drop();
      return;
    }
    if (now - this.lastPingAt >= PING_EVERY_MS) {
      this.lastPingAt = now;
      this.ws.send(JSON.stringify({ event: "ping", data: {} }));
    }
  }

  busy() {
    return false; // replaced by the page: true while the microphone is on
  }
}

async function probe(url) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), 60000);
  try {
    const response = await fetch(url, { cache: "no-store", signal: controller.signal });
    return response.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timeout);
  }
}
