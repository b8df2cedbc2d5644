// The browser's own speech recognition, for servers that recognise no speech.
//
// A server on a tiny instance (Render's free tier) runs with ASR_PROVIDER=none: it refuses
// audio and expects text recognised on the device (voice_command). Browsers with the Web
// Speech API (Chrome, Edge, Safari) can do that part; the page then sends interim results
// as they come (voice_command with is_final: false, each replacing the one before; also
// shown as the live partial transcript) and the final one with is_final: true.

import { recognitionLanguage } from "./language.js";

const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;

export class BrowserRecognizer {
  static get available() {
    return Boolean(Recognition);
  }

  /**
   * @param {(text: string) => void} onPartial  interim hypothesis (replace, don't append)
   * @param {(text: string, confidence: number) => void} onFinal  one finished request
   * @param {(error: string) => void} onError
   * @param {() => void} onEnd  listening stopped
   */
  constructor(onPartial, onFinal, onError, onEnd) {
    this.onPartial = onPartial;
    this.onFinal = onFinal;
    this.onError = onError;
    this.onEnd = onEnd;
    this.rec = null;
    this.keepGoing = false;
  }

  get on() {
    return this.rec !== null;
  }

  /** continuous: hands-free (restarts after each request); otherwise one request. */
  start(continuous) {
    if (this.rec) return;
    const rec = new Recognition();
    rec.lang = recognitionLanguage(); // the session's language (language.js)
    rec.interimResults = true;
    rec.continuous = continuous;
    this.keepGoing = continuous;
    rec.onresult = (event) => {
      let interim = "";
      for (let i = event.resultIndex; i < event.results.length; i++) {
        const result = event.results[i];
        if (result.isFinal) this.onFinal(result[0].transcript.trim(), result[0].confidence);
        else interim += result[0].transcript;
      }
      if (interim) this.onPartial(interim.trim());
    };
    rec.onerror = (event) => {
      if (event.error !== "no-speech" && event.error !== "aborted") {
        this.keepGoing = false;
        this.onError(event.error);
      }
    };
    rec.onend = () => {
      if (this.keepGoing && this.rec === rec) {
        rec.start(); // browsers stop listening after a while
      } else if (this.rec === rec) {
        this.rec = null;
        this.onEnd();
      }
    };
    this.rec = rec;
    rec.start();
  }

  /** Stop listening; a result still being recognised is delivered first. */
  stop() {
    this.keepGoing = false;
    if (this.rec) this.rec.stop();
  }
}
