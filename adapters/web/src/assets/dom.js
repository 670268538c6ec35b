// DOM helpers shared by every script of the chat client: find an element by id, make
// one with its class and text (always as textContent, never as HTML), and read the
// open conversation's id from the URL (#c=ID).

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new `tag` element with the class `cls` (if any) and the text `text` (if any). */
export function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text != null) n.textContent = text;
  return n;
}

/** The id of the conversation the URL names (#c=ID), or null. */
export function conversationId() {
  return new URLSearchParams(location.hash.slice(1)).get('c');
}
