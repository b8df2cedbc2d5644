// The conversation on screen: one TurnView per turn (the user's words, the agent's text,
// a line of notes) and the table of per-turn timings from streaming_complete.

const $ = (id) => document.getElementById(id);

const ENDINGS = ["stopped", "interrupted"];

export const allTurns = []; // every turn shown, of every session (window.voicePage.turns())

const TIMING_COLUMNS = [
  ["transcript_final_ms", "transcript"],
  ["first_token_ms", "first token"],
  ["first_sentence_ms", "first sentence"],
  ["first_chunk_ms", "first audio"],
  ["complete_ms", "complete"],
];

export class TurnView {
  constructor(typedText = null) {
    this.id = null;
    this.text = "";
    this.textAtChunk = 0;
    this.lastChunkIndex = -1;
    this.done = false;
    this.cancelled = false;
    this.chunks = 0;
    this.complete = null; // the streaming_complete data
    this.failed = false; // an error event ended it
    allTurns.push(this);
    this.el = document.createElement("article");
    this.el.className = "turn";
    this.user = bubble("user");
    this.agent = bubble("agent");
    this.meta = document.createElement("div");
    this.meta.className = "meta";
    this.el.append(this.user, this.agent, this.meta);
    if (typedText !== null) {
      this.user.textContent = typedText;
      this.user.dataset.final = "true";
      this.user.dataset.typed = "true";
    }
    $("empty")?.remove();
    const log = $("conversation");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(this.el);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  setUser(text, final) {
    this.user.textContent = text;
    this.user.dataset.final = String(Boolean(final));
    scrollDown();
  }

  agentText(text, final) {
    this.text = final ? text : this.text + text; // deltas append; the final is the whole
    this.agent.textContent = this.text;
    this.agent.dataset.final = String(Boolean(final));
    scrollDown();
  }

  summary() {
    return {
      id: this.id,
      user: this.user.textContent,
      userFinal: this.user.dataset.final === "true",
      typed: this.user.dataset.typed === "true",
      agent: this.agent.textContent,
      agentFinal: this.agent.dataset.final === "true",
      done: this.done,
      cancelled: this.cancelled,
      chunks: this.chunks,
      complete: this.complete,
      meta: this.meta.textContent,
    };
  }

  rewindText(length) {
    this.text = this.text.slice(0, length);
    this.agent.textContent = this.text;
  }

  /** Does the turn carry its ending already ("stopped" by the page, "interrupted")? */
  noted() {
    return [...this.meta.children].some((note) => ENDINGS.includes(note.dataset.text));
  }

  addNote(text, warn = false) {
    if ([...this.meta.children].some((note) => note.dataset.text === text)) return; // once
    const note = document.createElement("span");
    note.dataset.text = text;
    if (warn) note.className = "warn";
    note.textContent = (this.meta.textContent ? " · " : "") + text;
    this.meta.append(note);
  }

  finish(timings, note = null, audioMs = null) {
    this.done = true;
    this.agent.dataset.final = "true";
    if (timings) {
      const parts = [];
      if (timings.first_chunk_ms !== undefined) parts.push(`first audio ${timings.first_chunk_ms} ms`);
      if (timings.complete_ms !== undefined) parts.push(`complete ${timings.complete_ms} ms`);
      if (audioMs) parts.push(`${(audioMs / 1000).toFixed(1)} s of speech`);
      if (parts.length) this.addNote(`${this.id} · ${parts.join(" · ")}`);
    }
    if (note) this.addNote(note, true);
  }
}

function bubble(kind) {
  const el = document.createElement("div");
  el.className = `bubble ${kind}`;
  return el;
}

function scrollDown() {
  const log = $("conversation");
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 160) log.scrollTop = log.scrollHeight;
}

export function addTimingRow(turn, timings, audioMs) {
  const head = $("timings-head");
  const extra = Object.keys(timings).filter((k) => !TIMING_COLUMNS.some(([key]) => key === k));
  const columns = [...TIMING_COLUMNS, ...extra.map((k) => [k, k.replace(/_ms$/, "")])];
  const labels = ["turn", "request", ...columns.map(([, label]) => label), "speech"];
  if (head.children.length < labels.length) {
    head.replaceChildren(...labels.map((label) => cell("th", label)));
  }
  const request = cell("td", turn.user.textContent || "");
  request.title = request.textContent;
  const row = document.createElement("tr");
  row.dataset.turn = turn.id;
  row.append(
    cell("td", turn.id),
    request,
    ...columns.map(([key]) => cell("td", timings[key] === undefined ? "–" : String(timings[key]))),
    cell("td", audioMs ? `${(audioMs / 1000).toFixed(1)} s` : "–"),
  );
  const body = $("timings-body");
  body.querySelector(".placeholder")?.parentElement.remove();
  const earlier = [...body.children].find((r) => r.dataset.turn === turn.id);
  if (earlier) earlier.replaceWith(row); // one row per turn
  else body.append(row);
}

export function cell(tag, text) {
  const el = document.createElement(tag);
  el.textContent = text;
  return el;
}
