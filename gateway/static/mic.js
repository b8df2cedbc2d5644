// Microphone capture: getUserMedia -> AudioWorklet (mic-worklet.js) -> 16 kHz PCM pieces.
//
// Echo cancellation is requested so the agent's voice from the speakers does not come
// back as the user's speech. Each 100 ms piece (3,200 bytes) goes to `onPiece` with its
// RMS level; `flush()` hands over the part of a piece captured so far (used when a
// push-to-talk button is released, so the last words are not cut off).

export class Mic {
  constructor(context, onPiece) {
    this.ctx = context;
    this.onPiece = onPiece; // (ArrayBuffer pcm, number rms) => void
    this.stream = null;
    this.node = null;
    this.source = null;
    this.flushed = null;
    this.starting = null;
  }

  get on() {
    return this.stream !== null;
  }

  /** Ask for the microphone and start capturing (a second call waits for the first). */
  start() {
    if (!this.starting) {
      this.starting = this.open().finally(() => {
        this.starting = null;
      });
    }
    return this.starting;
  }

  async open() {
    if (this.stream) return;
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      throw new Error("this browser cannot capture audio here (use https or localhost)");
    }
    await this.ctx.audioWorklet.addModule(new URL("mic-worklet.js", import.meta.url));
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
      },
    });
    this.stream = stream;
    this.source = this.ctx.createMediaStreamSource(stream);
    // no outputs: a sink node, processed without being wired to the speakers
    this.node = new AudioWorkletNode(this.ctx, "mic-pcm16", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { pieceSamples: 1600 },
    });
    this.node.port.onmessage = ({ data }) => {
      if (data.pcm && data.pcm.byteLength) this.onPiece(data.pcm, data.rms);
      if (data.flushed && this.flushed) {
        this.flushed();
        this.flushed = null;
      }
    };
    this.source.connect(this.node);
  }

  /** Resolves once the audio captured so far has been handed to `onPiece`. */
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushed = resolve;
      this.node.port.postMessage({ flush: true });
      setTimeout(resolve, 300); // the audio thread did not answer: do not hang the button
    });
  }

  stop() {
    if (!this.stream) return;
    for (const track of this.stream.getTracks()) track.stop();
    this.source.disconnect();
    this.node.port.onmessage = null;
    this.stream = this.node = this.source = null;
  }
}
