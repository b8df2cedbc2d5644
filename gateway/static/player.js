// Gapless playback of reply audio as it arrives.
//
// Each tts_chunk becomes an AudioBuffer at the chunk's own sample rate (the AudioContext
// resamples) scheduled to start exactly where the previous one ends, so a reply plays as
// one continuous sound however its chunks were cut. pcm16 and wav chunks play as they
// arrive; mp3 (only when a server ignores format=pcm16) is decoded once the reply is
// complete, because MP3 frames may refer back into the previous chunk.
//
// A reply can be paused (the server heard someone start to talk over it) and resumed
// exactly where it stopped: the buffers still to play, the first from its offset, are
// kept and scheduled again. The AudioContext itself keeps running: the microphone needs it.

const START_LEAD_S = 0.08; // head start when the queue ran dry: absorbs network jitter

export class Player {
  constructor(context, stats, onChange = () => {}) {
    this.ctx = context;
    this.stats = stats; // shared counters the page exposes on window (tests read them)
    this.onChange = onChange;
    this.playhead = 0; // context time where the next buffer starts
    this.sources = new Map(); // AudioBufferSourceNode -> turn id
    this.mp3 = new Map(); // turn id -> [Uint8Array] waiting for the end of the reply
    this.started = new Map(); // AudioBufferSourceNode -> {buffer, at, offset}
    this.paused = new Map(); // turn id -> [{buffer, offset}] to play on resume
  }

  get playing() {
    return this.sources.size > 0 || this.paused.size > 0;
  }

  /** Queue one chunk of a reply (bytes already base64-decoded). */
  enqueue(turnId, bytes, format, sampleRate) {
    if (format === "mp3") {
      if (!this.mp3.has(turnId)) this.mp3.set(turnId, []);
      this.mp3.get(turnId).push(bytes);
      return;
    }
    let pcm = bytes;
    let rate = sampleRate;
    if (format === "wav") {
      ({ pcm, rate } = parseWav(bytes, sampleRate));
    }
    this.schedule(turnId, pcm16ToBuffer(this.ctx, pcm, rate));
  }

  /** Pause one reply where it is; its later audio waits too. */
  pause(turnId) {
    if (this.paused.has(turnId)) return;
    const now = this.ctx.currentTime;
    const held = [];
    for (const [source, turn] of this.sources) {
      if (turn !== turnId) continue;
      const { buffer, at, offset } = this.started.get(source);
      const into = offset + Math.max(0, now - at);
      if (into < buffer.duration) held.push({ buffer, offset: into });
      this.silence(source);
    }
    this.paused.set(turnId, held);
    if (this.sources.size === 0) this.playhead = 0;
    this.stats.replyPauses += 1;
    this.onChange();
  }

  /** Go on from exactly where `pause` stopped. */
  resume(turnId) {
    const held = this.paused.get(turnId);
    if (!held) return;
    this.paused.delete(turnId);
    for (const { buffer, offset } of held) this.schedule(turnId, buffer, offset);
    this.stats.replyResumes += 1;
    this.onChange();
  }

  /** The reply is complete: decode anything that had to wait for it (mp3). */
  async finish(turnId) {
    const parts = this.mp3.get(turnId);
    if (!parts) return;
    this.mp3.delete(turnId);
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      whole.set(p, at);
      at += p.length;
    }
    try {
      this.schedule(turnId, await this.ctx.decodeAudioData(whole.buffer));
    } catch (err) {
      console.warn("could not decode reply audio", err);
    }
  }

  schedule(turnId, buffer, offset = 0) {
    if (buffer.length === 0) return;
    if (this.paused.has(turnId)) {
      this.paused.get(turnId).push({ buffer, offset }); // arrived while paused
      return;
    }
    const now = this.ctx.currentTime;
    const backToBack = this.playhead > now;
    const startAt = backToBack ? this.playhead : now + START_LEAD_S;
    if (!backToBack) this.stats.queueStarts += 1; // a reply starts, or the queue ran dry
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    source.onended = () => {
      this.started.delete(source);
      if (this.sources.delete(source)) this.onChange();
    };
    source.start(startAt, offset);
    this.playhead = startAt + buffer.duration - offset;
    this.sources.set(source, turnId);
    this.started.set(source, { buffer, at: startAt, offset });
    this.stats.buffers += 1;
    this.stats.scheduledSamples += buffer.length;
    this.stats.scheduledSeconds += buffer.duration;
    this.onChange();
  }

  /** Ids of the turns whose audio is scheduled or sounding now. */
  playingTurns() {
    return new Set([...this.sources.values(), ...this.paused.keys()]);
  }

  silence(source) {
    this.sources.delete(source);
    this.started.delete(source);
    source.onended = null;
    try {
      source.stop();
    } catch {
      // never started: nothing to stop
    }
    source.disconnect();
  }

  /** Stop at once: every turn, or only `turnId`. */
  stop(turnId = null) {
    for (const [source, turn] of this.sources) {
      if (turnId !== null && turn !== turnId) continue;
      this.silence(source);
    }
    if (turnId === null) {
      this.mp3.clear();
      this.paused.clear();
    } else {
      this.mp3.delete(turnId);
      this.paused.delete(turnId);
    }
    if (this.sources.size === 0) this.playhead = 0;
    this.stats.stops += 1;
    this.onChange();
  }
}

function pcm16ToBuffer(ctx, bytes, rate) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Math.floor(bytes.byteLength / 2);
  const buffer = ctx.createBuffer(1, Math.max(n, 1), rate);
  const out = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return n === 0 ? { length: 0 } : buffer;
}

function parseWav(bytes, fallbackRate) {
  // a small RIFF walk: fmt gives the rate, data the samples (header is usually 44 bytes)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let rate = fallbackRate;
  let at = 12;
  while (at + 8 <= bytes.byteLength) {
    const id = String.fromCharCode(...bytes.subarray(at, at + 4));
    const size = view.getUint32(at + 4, true);
    if (id === "fmt ") rate = view.getUint32(at + 12, true);
    if (id === "data") return { pcm: bytes.subarray(at + 8, at + 8 + size), rate };
    at += 8 + size + (size % 2);
  }
  return { pcm: bytes.subarray(44), rate };
}
