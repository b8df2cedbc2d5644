// AudioWorklet: microphone at the AudioContext's rate -> 16 kHz mono s16le PCM pieces.
//
// Runs on the audio thread. Each 128-frame block is low-pass filtered (windowed-sinc FIR
// below 8 kHz, so downsampling does not fold high frequencies into the speech band) and
// resampled by linear interpolation with the fractional read position carried across
// blocks. Every `pieceSamples` output samples (100 ms by default) the piece is posted to
// the page as a transferable ArrayBuffer, with its RMS level for the meter; a `flush`
// message posts the part captured so far.

const OUT_RATE = 16000;
const TAPS = 31;

function lowPass(inRate) {
  // cutoff a little under the output Nyquist frequency; no filter needed when not downsampling
  if (inRate <= OUT_RATE) return null;
  const fc = (0.45 * OUT_RATE) / inRate; // cycles per input sample
  const mid = (TAPS - 1) / 2;
  const h = new Float32Array(TAPS);
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const n = i - mid;
    const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n);
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1));
    h[i] = sinc * hann;
    sum += h[i];
  }
  for (let i = 0; i < TAPS; i++) h[i] /= sum;
  return h;
}

class MicProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.filter = lowPass(sampleRate);
    this.history = new Float32Array(TAPS); // ring of the last TAPS input samples
    this.histPos = 0;
    this.prev = 0; // last filtered input sample (for interpolation across blocks)
    this.pos = 0; // read position relative to the current block, may be fractional
    this.pieceSamples = opts.pieceSamples || 1600;
    this.piece = new Int16Array(this.pieceSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.port.onmessage = ({ data }) => {
      if (data && data.flush) this.flush();
    };
  }

  /** Post the part of a piece captured so far (push-to-talk released). */
  flush() {
    const pcm = this.piece.slice(0, this.filled).buffer;
    const rms = this.filled ? Math.sqrt(this.sumSquares / this.filled) : 0;
    this.filled = 0;
    this.sumSquares = 0;
    this.port.postMessage({ pcm, rms, flushed: true }, [pcm]);
  }

  filtered(x) {
    if (!this.filter) return x;
    const hist = this.history;
    hist[this.histPos] = x;
    this.histPos = (this.histPos + 1) % TAPS;
    let acc = 0;
    let j = this.histPos;
    for (let i = 0; i < TAPS; i++) {
      acc += this.filter[i] * hist[j];
      j = j + 1 === TAPS ? 0 : j + 1;
    }
    return acc;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.piece[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.sumSquares += s * s;
    if (this.filled === this.pieceSamples) {
      const rms = Math.sqrt(this.sumSquares / this.pieceSamples);
      const buffer = this.piece.buffer;
      this.port.postMessage({ pcm: buffer, rms }, [buffer]);
      this.piece = new Int16Array(this.pieceSamples);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channel = input[0]; // mono: the first channel is enough for speech
    const n = channel.length;
    const block = new Float32Array(n);
    for (let i = 0; i < n; i++) block[i] = this.filtered(channel[i]);
    // output sample k sits at input position pos (relative to this block; -1 = prev)
    while (this.pos < n) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i === 0 ? this.prev : block[i - 1];
      const b = block[i];
      // positions are shifted by one so that pos in [0, 1) interpolates prev -> block[0]
      this.emit(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= n;
    this.prev = block[n - 1];
    return true;
  }
}

registerProcessor("mic-pcm16", MicProcessor);
