// A small, safe markdown renderer for model output.
//
// Safety rule: every piece of source text is HTML-escaped (& < > " ') before any
// formatting is applied, and formatting only ever wraps escaped text in a fixed set of
// tags. Link targets are limited to http, https and mailto. No raw HTML passes through.
//
// Supported: fenced code blocks (``` or ~~~, optional language, unterminated fences
// while a reply streams), inline code, ATX headings, bold, italic, strikethrough,
// links and bare URLs, unordered and ordered (nested) lists, blockquotes, GFM pipe
// tables, horizontal rules, paragraphs and line breaks.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for use in HTML content and in double- or single-quoted attributes. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Placeholder marker for already-rendered inline HTML; stripped from the input first.
const MARK = '\u0000';

const FENCE_OPEN = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
const TABLE_DELIM = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

const isBlank = (line) => /^\s*$/.test(line);
const indentOf = (line) => line.match(/^ */)[0].length;

/**
 * Renders markdown to an HTML string that is safe to assign to innerHTML.
 * @param {string} text
 * @returns {string}
 */
export function renderMarkdown(text) {
  const source = String(text ?? '')
    .replace(/\r\n?/g, '\n')
    .replace(/\u0000/g, '\uFFFD');
  const lines = source.split('\n').map(expandTabs);
  return renderBlocks(lines, false);
}

/** Leading tabs become four spaces so indentation can be measured in spaces. */
function expandTabs(line) {
  const m = line.match(/^[ \t]+/);
  if (!m || !m[0].includes('\t')) return line;
  let width = 0;
  for (const c of m[0]) width = c === '\t' ? width + 4 - (width % 4) : width + 1;
  return ' '.repeat(width) + line.slice(m[0].length);
}

function isTableStart(lines, i) {
  return (
    i + 1 < lines.length &&
    lines[i].includes('|') &&
    TABLE_DELIM.test(lines[i + 1]) &&
    lines[i + 1].includes('-') &&
    (lines[i + 1].includes('|') || lines[i].trim().startsWith('|')) &&
    splitRow(lines[i + 1]).length === splitRow(lines[i]).length
  );
}

/** Whether a line starts a block that ends a paragraph. */
function startsBlock(lines, i) {
  const line = lines[i];
  return (
    FENCE_OPEN.test(line) ||
    HEADING.test(line) ||
    HR.test(line) ||
    QUOTE.test(line) ||
    isListItem(line) ||
    isTableStart(lines, i)
  );
}

function isListItem(line) {
  const m = LIST_ITEM.exec(line);
  return !!m && m[1].length <= 3 && m[4] !== undefined && !HR.test(line);
}

/**
 * Renders a sequence of lines as blocks. In a tight list item, paragraphs are not
 * wrapped in <p>.
 */
function renderBlocks(lines, tight) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i++;
      continue;
    }

    const fence = FENCE_OPEN.exec(line);
    if (fence) {
      const [, indent, marker, lang] = fence;
      const body = [];
      i++;
      while (i < lines.length) {
        const close = lines[i].match(/^ {0,3}(`{3,}|~{3,})[ \t]*$/);
        if (close && close[1][0] === marker[0] && close[1].length >= marker.length) {
          i++;
          break;
        }
        // Strip up to the opening fence's indentation from each content line.
        const strip = Math.min(indent.length, indentOf(lines[i]));
        body.push(lines[i].slice(strip));
        i++;
      }
      out.push(codeBlock(body.join('\n'), lang));
      continue;
    }

    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${renderInline(heading[2] || '')}</h${level}>`);
      i++;
      continue;
    }

    if (HR.test(line)) {
      out.push('<hr>');
      i++;
      continue;
    }

    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const q = QUOTE.exec(lines[i]);
        if (q) inner.push(q[1]);
        else if (startsBlock(lines, i)) break;
        else inner.push(lines[i]); // lazy continuation of a quoted paragraph
        i++;
      }
      out.push(`<blockquote>\n${renderBlocks(inner, false)}\n</blockquote>`);
      continue;
    }

    if (isListItem(line)) {
      const [html, next] = renderList(lines, i);
      out.push(html);
      i = next;
      continue;
    }

    if (isTableStart(lines, i)) {
      const [html, next] = renderTable(lines, i);
      out.push(html);
      i = next;
      continue;
    }

    // Paragraph: until a blank line or the start of another block.
    const para = [line.trim()];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines, i)) {
      para.push(lines[i].trim());
      i++;
    }
    const html = renderInline(para.join('\n'));
    out.push(tight ? html : `<p>${html}</p>`);
  }
  return out.join('\n');
}

function codeBlock(code, lang) {
  const safeLang = (lang || '').replace(/[^\w+#.-]/g, '').slice(0, 32);
  const cls = safeLang ? ` class="language-${escapeHtml(safeLang)}"` : '';
  return `<pre><code${cls}>${escapeHtml(code)}</code></pre>`;
}

function renderList(lines, start) {
  const first = LIST_ITEM.exec(lines[start]);
  const ordered = /\d/.test(first[2]);
  const delimiter = first[2].slice(-1);
  const base = first[1].length;
  const items = [];
  let i = start;
  let loose = false;

  // A sibling item: same level, same kind of marker.
  const sibling = (line) => {
    const m = LIST_ITEM.exec(line);
    return (
      !!m &&
      isListItemAt(line, base) &&
      /\d/.test(m[2]) === ordered &&
      m[2].slice(-1) === delimiter
    );
  };

  while (i < lines.length && sibling(lines[i])) {
    const m = LIST_ITEM.exec(lines[i]);
    const contentIndent = m[1].length + m[2].length + (m[3] ? Math.min(m[3].length, 4) : 1);
    const content = [m[4] ?? ''];
    i++;
    let sawBlank = false;
    while (i < lines.length) {
      const l = lines[i];
      if (isBlank(l)) {
        sawBlank = true;
        content.push('');
        i++;
        continue;
      }
      const ind = indentOf(l);
      if (ind > base + 1 || ind >= contentIndent) {
        // Belongs to this item (a nested block or a continuation).
        content.push(l.slice(Math.min(ind, contentIndent)));
        sawBlank = false;
        i++;
        continue;
      }
      if (!sawBlank && !startsBlock(lines, i)) {
        content.push(l.trim()); // lazy paragraph continuation
        i++;
        continue;
      }
      break;
    }
    // Trailing blank lines belong between items, not to this item.
    while (content.length > 1 && content[content.length - 1] === '') content.pop();
    if (content.includes('')) loose = true;
    if (sawBlank && i < lines.length && sibling(lines[i])) loose = true;
    items.push(content);
  }

  const tag = ordered ? 'ol' : 'ul';
  const startNum = ordered ? parseInt(first[2], 10) : 1;
  const startAttr = ordered && startNum !== 1 ? ` start="${startNum}"` : '';
  const body = items
    .map((content) => `<li>${renderBlocks(content, !loose)}</li>`)
    .join('\n');
  return [`<${tag}${startAttr}>\n${body}\n</${tag}>`, i];
}

function isListItemAt(line, base) {
  const m = LIST_ITEM.exec(line);
  return !!m && m[4] !== undefined && !HR.test(line) && m[1].length <= base + 1 && m[1].length + 1 >= base;
}

/** Splits a table row on unescaped pipes outside inline code. */
function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cell = '';
  let ticks = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s[k];
    if (c === '\\' && s[k + 1] === '|') {
      cell += '|';
      k++;
    } else if (c === '`') {
      let run = 1;
      while (s[k + run] === '`') run++;
      if (ticks === 0) ticks = run;
      else if (ticks === run) ticks = 0;
      cell += '`'.repeat(run);
      k += run - 1;
    } else if (c === '|' && ticks === 0) {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += c;
    }
  }
  cells.push(cell.trim());
  return cells;
}

function renderTable(lines, start) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((d) => {
    const left = d.startsWith(':');
    const right = d.endsWith(':');
    if (left && right) return ' class="align-center"';
    if (right) return ' class="align-right"';
    if (left) return ' class="align-left"';
    return '';
  });
  const width = header.length;
  const cellsOf = (row) => {
    const out = row.slice(0, width);
    while (out.length < width) out.push('');
    return out;
  };
  const head = cellsOf(header)
    .map((c, k) => `<th${aligns[k] || ''}>${renderInline(c)}</th>`)
    .join('');
  const rows = [];
  let i = start + 2;
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes('|')) {
    const cells = cellsOf(splitRow(lines[i]))
      .map((c, k) => `<td${aligns[k] || ''}>${renderInline(c)}</td>`)
      .join('');
    rows.push(`<tr>${cells}</tr>`);
    i++;
  }
  const body = rows.length ? `\n<tbody>\n${rows.join('\n')}\n</tbody>` : '';
  return [`<div class="table-wrap"><table>\n<thead>\n<tr>${head}</tr>\n</thead>${body}\n</table></div>`, i];
}

const SAFE_URL = /^(?:https?:\/\/|mailto:)/i;

/** Renders inline markdown of one block; newlines become <br>. */
export function renderInline(raw) {
  const slots = [];
  const keep = (html) => `${MARK}${slots.push(html) - 1}${MARK}`;
  let s = String(raw).replace(/\u0000/g, '\uFFFD');

  // Inline code first: nothing inside it is formatted.
  s = s.replace(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => {
    let c = code.replace(/\n/g, ' ');
    if (/^ .*[^ ].* $/.test(c)) c = c.slice(1, -1);
    return keep(`<code>${escapeHtml(c)}</code>`);
  });

  // Backslash escapes make the next punctuation character literal.
  s = s.replace(/\\([\\`*_{}[\]()#+\-.!|~<>"'])/g, (_, c) => keep(escapeHtml(c)));

  // Everything from here on works on escaped text.
  s = escapeHtml(s);

  // Links and images: [text](url "title"), ![alt](url). Images become links (the
  // client's policy does not load remote images).
  s = s.replace(
    /(!?)\[([^\]\n]*)\]\(\s*((?:[^\s()\u0000]|\([^\s()\u0000]*\))+)(?:\s+(?:&quot;[^\n]*?&quot;|&#39;[^\n]*?&#39;))?\s*\)/g,
    (whole, bang, label, url) => {
      const text = formatEmphasis(label || url);
      if (!SAFE_URL.test(url)) return keep(text);
      return keep(link(url, text));
    },
  );

  // Autolinks: <https://...> (escaped to &lt;...&gt;) and bare URLs.
  s = s.replace(/&lt;((?:https?:\/\/|mailto:)(?:[^\s&\u0000]|&amp;)+?)&gt;/gi, (_, url) =>
    keep(link(url, url)),
  );
  s = s.replace(/(^|[^\w/\u0000])(https?:\/\/(?:[^\s&\u0000]|&amp;)+)/gi, (_, before, url) => {
    let tail = '';
    // Trailing punctuation is the sentence's, not the URL's.
    for (;;) {
      const last = url[url.length - 1];
      if (/[.,:;!?*_~]/.test(last)) {
        tail = last + tail;
        url = url.slice(0, -1);
      } else if (last === ')' && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
        tail = last + tail;
        url = url.slice(0, -1);
      } else break;
    }
    if (url.endsWith('&amp;')) {
      tail = '&amp;' + tail;
      url = url.slice(0, -5);
    }
    if (!/^https?:\/\/./i.test(url)) return before + url + tail;
    return before + keep(link(url, url)) + tail;
  });

  s = formatEmphasis(s).replace(/\n/g, '<br>\n');

  // Put the kept HTML back (slots may hold slots, e.g. code inside a link).
  for (let guard = 0; s.includes(MARK) && guard < 5; guard++) {
    s = s.replace(/\u0000(\d+)\u0000/g, (_, n) => slots[Number(n)] ?? '');
  }
  return s;
}

/** An anchor for an already-escaped, already-checked URL and rendered text. */
function link(escapedUrl, html) {
  return `<a href="${escapedUrl}" target="_blank" rel="noopener noreferrer">${html}</a>`;
}

/** Bold, italic and strikethrough on escaped text. */
function formatEmphasis(s) {
  return s
    .replace(/\*\*\*(?=\S)([\s\S]*?\S)\*\*\*/g, '<strong><em>$1</em></strong>')
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>')
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
}
