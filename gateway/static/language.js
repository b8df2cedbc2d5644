// The session language on the voice page: a picker, `lang` on the page URL, and the tag
// the browser's own speech recognition listens for.
//
// The page passes `?lang=` on to the WebSocket (the server then writes, speaks and
// recognises in that language). "Auto" leaves it out: the server detects the language
// from the first request and says which in each final agent_response (`lang`). A session's
// language is fixed when it connects, so picking another one reloads the page with the
// new `lang`, which starts a new session.

export const LANGUAGES = [
  { code: "", name: "Auto", recognition: "" },
  { code: "en", name: "English", recognition: "en-US" },
  { code: "zh-CN", name: "中文", recognition: "zh-CN" },
  { code: "es", name: "Español", recognition: "es-ES" },
  { code: "fr", name: "Français", recognition: "fr-FR" },
  { code: "de", name: "Deutsch", recognition: "de-DE" },
];

let detected = ""; // the language the server detected (Auto), once it said

/** The language on the page URL ("" for Auto); unknown values count as Auto. */
export function pageLanguage() {
  const wanted = new URL(location.href).searchParams.get("lang") || "";
  const known = LANGUAGES.find((l) => l.code.toLowerCase() === wanted.toLowerCase());
  return known ? known.code : "";
}

/** What the browser's recogniser should listen for: the page's language, else the one the
 * server detected, else the browser's own. */
export function recognitionLanguage() {
  const code = pageLanguage() || detected;
  const entry = LANGUAGES.find((l) => l.code === code && l.recognition);
  return entry ? entry.recognition : navigator.language || "en-US";
}

/** The server's word on the session's language (connected, final agent_response). */
export function noteServerLanguage(code) {
  if (code && !pageLanguage()) detected = code;
}

/** Put the picker in `#language` (if the page has one) and mark the document's language. */
export function mountLanguagePicker() {
  const current = pageLanguage();
  if (current) document.documentElement.lang = current;
  const host = document.getElementById("language");
  if (!host) return;
  const select = document.createElement("select");
  select.id = "lang";
  select.setAttribute("aria-label", "Language");
  select.title = "The language you speak and hear";
  for (const lang of LANGUAGES) {
    const option = new Option(lang.name, lang.code, false, lang.code === current);
    select.append(option);
  }
  select.addEventListener("change", () => {
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("lang", select.value);
    else url.searchParams.delete("lang");
    location.assign(url.href); // a new session in the new language
  });
  host.append(select);
}
