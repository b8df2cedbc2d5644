// What each error code of the protocol (docs/protocol.md, "Error codes") means for the
// person using the page. The code and the server's message go in a details line only.

const SENTENCES = {
  bad_json: "The page sent something the server could not read. Reloading the page should fix it.",
  unknown_event: "The page and the server do not quite match. Reloading the page should fix it.",
  invalid_field: "That request could not be sent as it was; try a shorter one.",
  bad_audio: "A piece of microphone audio arrived damaged and was skipped.",
  frame_too_large: "A piece of microphone audio was too large and was skipped.",
  utterance_too_long:
    "That was longer than the agent listens at once; it answers what it heard so far. Pause, then go on.",
  session_mismatch: "This page lost track of its conversation. Reloading the page should fix it.",
  no_speech: "No speech was heard. Try speaking a little louder or closer to the microphone.",
  unavailable: "The server had a brief hiccup. Please say that again.",
  asr_disabled: "This server does not recognise speech: type your request instead.",
  asr_language_unsupported:
    "This server cannot recognise speech in this language: your browser does it, or type your request.",
  rate_limited: "That was a lot at once; wait a moment, then try again.",
  unknown_turn: "That reply had already ended, so there was nothing to stop.",
  busy: "The agent is still answering; wait for it to finish or press Stop.",
  resume_failed: "The earlier conversation could not be continued; a new one has started.",
  unauthorized: "This page needs an access key: open it with ?token=… in the address.",
  stage_failed: "The agent could not answer this time. Please try again.",
  replay_truncated: "You were away for a while: only the latest part of the conversation was sent again.",
};

const STAGE_REASONS = {
  no_api_key: "The agent's language model is not set up on this server (no API key).",
  auth_failed: "The agent's language model refused the server's API key.",
  unreachable: "The agent could not reach its language model. Please try again shortly.",
  rate_limited: "The agent's language model is busy. Please try again in a minute.",
  timeout: "The agent's language model took too long. Please try again.",
};

/** One sentence a person understands for an `error` event's data. */
export function errorSentence(data) {
  if (data.code === "stage_failed" && STAGE_REASONS[data.reason]) return STAGE_REASONS[data.reason];
  return SENTENCES[data.code] || "Something went wrong. Please try again.";
}

export const knownCodes = Object.keys(SENTENCES);
