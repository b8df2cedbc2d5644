// The voice page: wires the microphone, the connection and the player to the screen.
//
// Protocol: docs/protocol.md. Audio goes up as binary frames of 16 kHz s16le PCM (100 ms
// each); replies come back as pcm16 tts_chunk events and play gaplessly. For tests the
// page exposes its counters and state on `window.voicePage`.

import { VoiceConnection } from "./connection.js";
import { Mic } from "./mic.js";
import { Player } from "./player.js";
import { mountLanguagePicker, noteServerLanguage } from "./language.js";
import { BrowserRecognizer } from "./speech.js";
import { errorSentence } from "./errors.js";
import { TurnView, addTimingRow, allTurns, cell } from "./view.js";

const $ = (id) => document.getElementById(id);

const SPEECH_RMS = 0.008; // about -42 dBFS: a louder 100 ms piece counts as speech
const PRE_ROLL_PIECES = 3; // audio kept from just before speech starts
const PASSTHROUGH = ["voice", "rate", "pitch", "barge_in", "token", "format", "lang"];
const PHASES = {
  offline: "Offline",
  connecting: "Connecting…",
  waking: "Waking up…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  idle: "Idle",
  failed: "Refused",
};

const stats = {
  phase: "offline",
  piecesSent: 0,
  bytesSent: 0,
  finalsSent: 0,
  cancelsSent: 0,
  chunks: 0,
  buffers: 0,
  queueStarts: 0,
  scheduledSamples: 0,
  scheduledSeconds: 0,
  stops: 0,
  replyPauses: 0, // the server heard someone start to talk over a reply ...
  replyResumes: 0, // ... and it was not a request after all
  connects: 0,
  resumes: 0,
};

let audioCtx = null;
let player = null;
let mic = null;
let mode = "handsfree";
let gateOpen = false; // hands-free: audio flows once local speech was heard
const preRoll = [];
let talking = false; // push-to-talk held
let releasing = false;
let sentSinceFinal = 0;
let turns = new Map(); // turn id -> TurnView (of the current session)
const pendingTyped = []; // typed requests waiting for their turn id
let lastChunk = null; // {turn, index}: the last reply audio seen, for resume
let lastDone = null; // id of the last finished turn
let serverAsr = true; // false: the server recognises no speech (ASR_PROVIDER=none)
let recognizer = null; // the browser's speech recognition, used when serverAsr is false
let heard = null; // TurnView with the browser recognizer's interim text

// --- connection -------------------------------------------------------------------------

const page = new URL(location.href);
const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/voice`;
const params = { user_id: page.searchParams.get("user_id") || userId(), format: "pcm16" };
for (const key of PASSTHROUGH) {
  if (page.searchParams.has(key)) params[key] = page.searchParams.get(key);
}

const conn = new VoiceConnection({
  url: wsBase,
  healthUrl: new URL("/health", location.href).href,
  params,
  resumePoint,
  onPhase: showPhase,
  onEvent,
  onNotice: notice,
});
conn.busy = () => Boolean(mic && mic.on);
mountLanguagePicker();

function userId() {
  let id = localStorage.getItem("vna-user");
  if (!id) {
    id = `web-${Math.random().toString(16).slice(2, 10)}`;
    localStorage.setItem("vna-user", id);
  }
  return id;
}

function showPhase(phase, detail) {
  stats.phase = phase;
  $("status").dataset.phase = phase;
  $("status-text").textContent = PHASES[phase] || phase;
  $("status-detail").textContent = detail || "";
}

/** A line in the footer: a sentence for people; the protocol's words only in `details`. */
function notice(kind, text, details = "") {
  const el = $("notice");
  el.dataset.kind = kind;
  const more = document.createElement("span");
  more.className = "details";
  more.textContent = details;
  el.replaceChildren(text, ...(details ? [more] : []));
}

/** A good turn: an error shown earlier is no longer news. */
function clearError() {
  if ($("notice").dataset.kind === "error") notice("", "");
}

// --- audio ------------------------------------------------------------------------------

/** The one AudioContext (created and resumed on a user gesture, as browsers require). */
function audio() {
  if (!audioCtx) {
    audioCtx = new AudioContext({ latencyHint: "interactive" });
    player = new Player(audioCtx, stats, updateStop);
    mic = new Mic(audioCtx, onPiece);
  }
  if (audioCtx.state === "suspended") audioCtx.resume();
  return audioCtx;
}

function onPiece(pcm, rms) {
  $("level").style.width = `${Math.min(100, Math.sqrt(rms) * 300).toFixed(0)}%`;
  if (mode === "ptt") {
    if (talking || releasing) sendPcm(pcm);
    return;
  }
  if (!gateOpen) {
    preRoll.push(pcm);
    if (preRoll.length > PRE_ROLL_PIECES) preRoll.shift();
    if (rms < SPEECH_RMS || !conn.open) return;
    gateOpen = true; // from here on the server's end-of-speech detection cuts utterances
    for (const piece of preRoll.splice(0)) sendPcm(piece);
    return;
  }
  sendPcm(pcm);
}

function sendPcm(pcm) {
  if (conn.sendAudio(pcm)) {
    stats.piecesSent += 1;
    stats.bytesSent += pcm.byteLength;
    sentSinceFinal += pcm.byteLength;
  }
}

function sendFinal() {
  if (sentSinceFinal === 0) return;
  sentSinceFinal = 0;
  if (conn.send("voice_data", { audio_chunk: "", is_final: true })) stats.finalsSent += 1;
}

/** Is the microphone (or the browser's recogniser) listening? */
function listening() {
  return serverAsr ? Boolean(mic && mic.on) : Boolean(recognizer && recognizer.on);
}

async function micOn() {
  audio();
  conn.ensure();
  if (!serverAsr) return startRecognizer();
  try {
    await mic.start();
  } catch (err) {
    notice("error", `Microphone: ${err.message || err}`);
    return false;
  }
  updateMic();
  return true;
}

function micOff() {
  if (recognizer) recognizer.stop();
  if (!mic) return updateMic();
  if (mode === "handsfree" && gateOpen && serverAsr) sendFinal();
  gateOpen = false;
  preRoll.length = 0;
  mic.stop();
  $("level").style.width = "0";
  updateMic();
}

async function pressTalk() {
  if (talking) return;
  talking = true;
  updateMic();
  if (player && (player.playing || activeTurn())) stopReply(); // talking over the agent
  if (!listening()) {
    const ok = await micOn();
    if (!ok) talking = false;
  }
  updateMic();
}

async function releaseTalk() {
  if (!talking) return;
  talking = false;
  if (!serverAsr) {
    micOff(); // the recogniser delivers what it heard, then stops
    return;
  }
  releasing = true;
  updateMic();
  await mic.flush(); // the words spoken just before the release
  releasing = false;
  sendFinal();
}

// --- recognition in the browser (servers without speech recognition) ----------------------

/** The server refuses audio: stop streaming it and recognise in the browser instead. */
function useBrowserRecognition(why) {
  if (!serverAsr) return;
  gateOpen = false; // no is_final either: the server would refuse it too
  if (mic && mic.on) micOff();
  serverAsr = false;
  notice(
    "info",
    BrowserRecognizer.available
      ? why || "This server does not recognise speech: your browser's speech recognition is used."
      : "This server does not recognise speech and this browser cannot: type your request.",
  );
  updateMic();
}

function startRecognizer() {
  if (!BrowserRecognizer.available) return false;
  if (!recognizer) {
    recognizer = new BrowserRecognizer(
      (text) => {
        if (!heard) {
          heard = new TurnView();
          if (player && (player.playing || activeTurn())) stopReply(); // the user speaks
        }
        heard.setUser(text, false);
        sendInterim(text);
      },
      (text, confidence) => {
        const view = heard;
        heard = null;
        sendTyped(text, confidence, view);
      },
      (error) => notice("error", `Speech recognition: ${error}`),
      updateMic,
    );
  }
  try {
    recognizer.start(mode === "handsfree");
  } catch (err) {
    notice("error", `Speech recognition: ${err.message || err}`);
    return false;
  }
  updateMic();
  return true;
}

/** Ask the server once whether it runs speech recognition at all (/ready lists workers). */
async function checkServerAsr() {
  try {
    const response = await fetch(new URL("/ready", location.href), { cache: "no-store" });
    const body = await response.json();
    if (body.redis === "ok" && body.workers && !("asr" in body.workers)) useBrowserRecognition();
  } catch {
    // unknown: an asr_disabled error will tell
  }
}

// --- stop / barge-in --------------------------------------------------------------------

function activeTurn() {
  let newest = null;
  for (const turn of turns.values()) if (!turn.done) newest = turn;
  return newest;
}

function stopReply() {
  // replies still sounding count as stopped too, even when the server already sent them all
  for (const id of player ? player.playingTurns() : []) {
    const playing = turns.get(id);
    if (playing && !playing.cancelled) {
      playing.cancelled = true;
      playing.addNote("stopped");
    }
  }
  if (player) player.stop();
  const turn = activeTurn();
  if (turn && !turn.cancelled) {
    turn.cancelled = true;
    turn.addNote("stopped");
  }
  if (conn.session && conn.session.v2) {
    conn.send("cancel", turn ? { turn_id: turn.id } : {});
    stats.cancelsSent += 1;
  }
  updateStop();
}

// --- server events ----------------------------------------------------------------------

function onEvent(event, data) {
  if (data && data.lang) noteServerLanguage(data.lang);
  switch (event) {
    case "connected":
      return onConnected(data);
    case "partial_transcription":
      if (!turns.has(data.turn_id)) onSpeechStarts(data.turn_id);
      return turnFor(data.turn_id, true).setUser(data.text, data.is_final);
    case "agent_response":
      return turnFor(data.turn_id).agentText(data.text, data.is_final);
    case "tts_chunk":
      return onChunk(data);
    case "streaming_complete":
      return onComplete(data);
    case "interrupted":
      return onInterrupted(data);
    case "reply_paused":
      if (player && !turnFor(data.turn_id).cancelled) player.pause(data.turn_id);
      return updateStop();
    case "reply_resumed":
      if (player && !turnFor(data.turn_id).cancelled) player.resume(data.turn_id);
      return updateStop();
    case "error":
      return onError(data);
    default:
      return undefined; // pong and anything newer: the connection already noted the frame
  }
}

/** The server heard the user start a new request; with barge-in on, the agent stops. A
 * server that confirms barge-ins pauses the reply itself and cuts it only for a person. */
function onSpeechStarts(turnId) {
  if (!player || !player.playing || !(conn.session && conn.session.bargeIn)) return;
  if (conn.session.confirmsBargeIn) return;
  const sounding = new Set(player.playingTurns());
  for (const turn of turns.values()) {
    if (turn.id === turnId || turn.cancelled) continue;
    turn.cancelled = true; // chunks still in flight are not played
    // the server's own `interrupted` may come after this partial (both ride the reply
    // stream): label the cut here, once
    if (sounding.has(turn.id) || !turn.done) turn.addNote("interrupted");
  }
  player.stop();
  updateStop();
}

function onConnected(data) {
  stats.connects += 1;
  gateOpen = false; // an utterance cut by the drop is over: wait for speech again
  sentSinceFinal = 0;
  if (data.resumed) {
    stats.resumes += 1;
  } else {
    // a new session: its turn ids start again at t1
    for (const turn of turns.values()) if (!turn.done) turn.finish(null, "connection lost");
    turns = new Map();
    for (const typed of pendingTyped.splice(0)) typed.finish(null, "connection lost");
    lastChunk = lastDone = null;
  }
  if (stats.connects === 1) checkServerAsr();
  $("session").textContent = `session ${data.session_id.slice(0, 8)} · ${params.user_id}`;
}

function onChunk(data) {
  const turn = turnFor(data.turn_id);
  if (turn.cancelled || data.chunk_index <= turn.lastChunkIndex) return; // stopped / replayed
  turn.lastChunkIndex = data.chunk_index;
  turn.textAtChunk = turn.text.length;
  lastChunk = { turn: turn.id, index: data.chunk_index };
  turn.chunks += 1;
  stats.chunks += 1;
  audio();
  player.enqueue(turn.id, base64Bytes(data.audio_chunk), data.format, data.sample_rate);
}

/** The server cut a reply (our cancel, or the user talked over it): silence it now. */
function onInterrupted(data) {
  const turn = turnFor(data.turn_id);
  if (turn.cancelled) return; // the page stopped it already
  turn.addNote(data.reason === "barge_in" ? "interrupted" : "stopped");
  turn.cancelled = true;
  if (player) player.stop(turn.id);
  updateStop();
}

function onComplete(data) {
  const turn = turnFor(data.turn_id);
  if (data.interrupted) {
    if (!turn.cancelled && player) player.stop(turn.id); // not stopped here already
    turn.cancelled = true;
  } else if (player) {
    player.finish(turn.id);
  }
  const timings = { ...(data.timings || {}) };
  addTimingRow(turn, timings, data.audio_ms); // a repeat (replayed on resume) replaces its row
  if (!turn.complete) {
    // a reply cut by the page or by onInterrupted carries its label already
    turn.finish(timings, data.interrupted && !turn.noted() ? "interrupted" : null, data.audio_ms);
  }
  turn.complete = { ...data };
  if (!data.interrupted && !turn.failed) clearError();
  lastDone = turn.id;
  updateStop();
}

function onError(data) {
  if (data.code === "resume_failed") return; // the connection starts a new session
  if (data.code === "asr_disabled") return useBrowserRecognition();
  if (data.code === "asr_language_unsupported") return useBrowserRecognition(data.message);
  const turn = data.turn_id ? turns.get(data.turn_id) : null;
  const sentence = errorSentence(data);
  if (turn && data.code === "no_speech") {
    turn.finish(null, sentence);
    lastDone = turn.id;
  } else if (turn) {
    turn.failed = true;
    turn.addNote(sentence, true);
  }
  notice("error", sentence, `${data.code}: ${data.message}`);
}

/** The view of a turn; a typed request shown before its id was known is adopted here. */
function turnFor(id, speech = false) {
  let turn = turns.get(id);
  if (!turn) {
    const typed = !speech ? pendingTyped.shift() : null;
    turn = typed || new TurnView();
    turn.id = id;
    turn.el.dataset.turn = id;
    turns.set(id, turn);
  }
  return turn;
}

/** Where a resumed session should replay from; forget what we showed after that point. */
function resumePoint() {
  const number = (id) => (id ? Number.parseInt(id.slice(1), 10) : 0);
  const live = lastChunk && !turns.get(lastChunk.turn)?.done ? lastChunk : null;
  const point = live && number(live.turn) > number(lastDone) ? live : null;
  const after = point ? number(point.turn) : number(lastDone);
  for (const turn of turns.values()) {
    if (turn.done || number(turn.id) < after) continue;
    turn.rewindText(point && turn.id === point.turn ? turn.textAtChunk : 0);
  }
  if (point) return { last_turn_id: point.turn, last_chunk_index: point.index };
  return lastDone ? { last_turn_id: lastDone } : {};
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// --- controls ---------------------------------------------------------------------------

function updateMic() {
  const button = $("mic");
  const on = listening();
  button.disabled = !serverAsr && !BrowserRecognizer.available;
  if (mode === "ptt") {
    button.setAttribute("aria-pressed", String(talking));
    $("mic-label").textContent = talking ? "Listening… release to send" : "Hold to talk";
    $("mic-hint").textContent = "Push to talk: hold the button (or the space bar) while you speak.";
  } else {
    button.setAttribute("aria-pressed", String(on));
    $("mic-label").textContent = on ? "Stop listening" : "Start listening";
    $("mic-hint").textContent = "Hands-free: just speak; a short pause ends your request.";
  }
  if (!serverAsr) {
    $("mic-hint").textContent = BrowserRecognizer.available
      ? "This server does not recognise speech: your browser does it and sends the text."
      : "This server does not recognise speech: type your request.";
  }
}

function updateStop() {
  const busy = Boolean((player && player.playing) || activeTurn());
  $("stop").disabled = !busy;
}

function setMode(next) {
  if (next === mode) return;
  if (mode === "handsfree" && gateOpen) sendFinal();
  gateOpen = false;
  mode = next;
  for (const [id, name] of [
    ["mode-handsfree", "handsfree"],
    ["mode-ptt", "ptt"],
  ]) {
    $(id).classList.toggle("on", mode === name);
    $(id).setAttribute("aria-checked", String(mode === name));
  }
  updateMic();
}

/** The browser recogniser's interim text: the server replaces it with each newer one and
 * answers only the final one, though it may start on a complete request meanwhile. */
function sendInterim(text) {
  const command = text.trim();
  if (!command || !conn.open || !conn.session || conn.session.version < 5) return;
  conn.send("voice_command", { command, is_final: false });
}

/** A typed request, or one the browser recognised (`confidence`, shown in `view`). */
async function sendTyped(text, confidence = null, view = null) {
  const command = text.trim();
  if (!command) {
    view?.el.remove();
    return;
  }
  audio();
  await conn.ensure();
  if (player && (player.playing || activeTurn())) stopReply(); // a new request replaces it
  // is_final: the request is complete, answer now (protocol 5; older servers ignore it)
  const data = confidence ? { command, confidence, is_final: true } : { command, is_final: true };
  if (conn.send("voice_command", data)) {
    if (view) view.setUser(command, true);
    pendingTyped.push(view || new TurnView(command));
    updateStop();
  } else {
    notice("error", "Not connected; try again in a moment.");
  }
}

function bindControls() {
  $("mode-handsfree").onclick = () => setMode("handsfree");
  $("mode-ptt").onclick = () => setMode("ptt");
  const button = $("mic");
  button.addEventListener("click", () => {
    if (mode !== "handsfree") return;
    if (listening()) micOff();
    else micOn();
  });
  button.addEventListener("pointerdown", (e) => {
    if (mode !== "ptt") return;
    button.setPointerCapture(e.pointerId);
    pressTalk();
  });
  for (const name of ["pointerup", "pointercancel"]) {
    button.addEventListener(name, () => mode === "ptt" && releaseTalk());
  }
  const typing = (e) => e.target instanceof HTMLInputElement;
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && mode === "ptt" && !e.repeat && !typing(e)) {
      e.preventDefault();
      pressTalk();
    }
    if (e.code === "Escape" && !$("stop").disabled) stopReply();
  });
  document.addEventListener("keyup", (e) => {
    if (e.code === "Space" && mode === "ptt" && !typing(e)) releaseTalk();
  });
  $("stop").onclick = stopReply;
  $("command-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("command");
    sendTyped(input.value);
    input.value = "";
  });
  for (const chip of document.querySelectorAll(".chip")) {
    chip.onclick = () => sendTyped(chip.dataset.say);
  }
  const placeholder = document.createElement("tr");
  const td = cell("td", "Timings of each turn appear here.");
  td.className = "placeholder";
  placeholder.append(td);
  $("timings-body").append(placeholder);
}

bindControls();
updateMic();
conn.ensure();

window.voicePage = {
  stats,
  connection: conn,
  get sessionId() {
    return conn.session ? conn.session.id : null;
  },
  turns: () => allTurns.map((turn) => turn.summary()),
  playing: () => Boolean(player && player.playing),
  audioTime: () => (audioCtx ? audioCtx.currentTime : 0),
  drop: () => conn.drop(),
};
