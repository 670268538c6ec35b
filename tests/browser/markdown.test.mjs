// Unit tests of the chat client's markdown renderer: formatting, and above all safety
// against script injection from model output. Run: node --test tests/browser/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderMarkdown, escapeHtml } from '../../adapters/web/src/assets/markdown.js';

const md = renderMarkdown;

/** Every tag the renderer may emit; anything else means raw HTML got through. */
const ALLOWED_TAGS = new Set([
  'p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'a', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'ul', 'ol', 'li', 'blockquote', 'hr', 'div', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
]);
/** Attributes the renderer may emit. */
const ALLOWED_ATTRS = new Set(['href', 'target', 'rel', 'class', 'start']);

/** A strict check of the output's markup: only known tags and attributes, safe hrefs. */
function assertSafe(html) {
  for (const m of html.matchAll(/<\/?([a-zA-Z][\w-]*)([^>]*)>/g)) {
    const [, tag, attrs] = m;
    assert.ok(ALLOWED_TAGS.has(tag.toLowerCase()), `unexpected tag <${tag}> in ${html}`);
    for (const a of attrs.matchAll(/\s([^\s=]+)(?:="([^"]*)")?/g)) {
      const [, name, value] = a;
      assert.ok(ALLOWED_ATTRS.has(name), `unexpected attribute ${name} in ${html}`);
      if (name === 'href') {
        assert.match(value, /^(https?:\/\/|mailto:)/i, `unsafe href ${value}`);
      }
    }
  }
  // Attribute values never hold a raw quote, so nothing breaks out of one.
  for (const m of html.matchAll(/="([^"]*)"/g)) assert.ok(!m[1].includes('<'), html);
}

test('escapeHtml escapes the five special characters', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
});

test('plain text becomes an escaped paragraph', () => {
  assert.equal(md('Hello & welcome'), '<p>Hello &amp; welcome</p>');
  assert.equal(md(''), '');
  assert.equal(md('   \n\n'), '');
});

test('paragraphs and line breaks', () => {
  assert.equal(md('one\ntwo\n\nthree'), '<p>one<br>\ntwo</p>\n<p>three</p>');
  assert.equal(md('a\r\nb'), '<p>a<br>\nb</p>');
});

test('headings', () => {
  assert.equal(md('# Title'), '<h1>Title</h1>');
  assert.equal(md('### Third ###'), '<h3>Third</h3>');
  assert.equal(md('###### six'), '<h6>six</h6>');
  assert.equal(md('####### seven'), '<p>####### seven</p>');
  assert.equal(md('#hashtag'), '<p>#hashtag</p>');
  assert.equal(md('## With **bold**'), '<h2>With <strong>bold</strong></h2>');
});

test('bold, italic, strikethrough', () => {
  assert.equal(md('**bold** and __also__'), '<p><strong>bold</strong> and <strong>also</strong></p>');
  assert.equal(md('*it* and _it_'), '<p><em>it</em> and <em>it</em></p>');
  assert.equal(md('***both***'), '<p><strong><em>both</em></strong></p>');
  assert.equal(md('~~gone~~'), '<p><del>gone</del></p>');
  // Not emphasis: arithmetic, identifiers, unclosed markers while streaming.
  assert.equal(md('2 * 3 * 4'), '<p>2 * 3 * 4</p>');
  assert.equal(md('snake_case_name'), '<p>snake_case_name</p>');
  assert.equal(md('**not yet closed'), '<p>**not yet closed</p>');
});

test('inline code is not formatted and is escaped', () => {
  assert.equal(md('use `a **b** <c>` here'), '<p>use <code>a **b** &lt;c&gt;</code> here</p>');
  assert.equal(md('``code with ` tick``'), '<p><code>code with ` tick</code></p>');
});

test('fenced code block with language', () => {
  const out = md('Before\n\n```rust\nfn main() {\n    println!("<hi>");\n}\n```\n\nAfter');
  assert.equal(
    out,
    '<p>Before</p>\n<pre><code class="language-rust">fn main() {\n    println!(&quot;&lt;hi&gt;&quot;);\n}</code></pre>\n<p>After</p>',
  );
});

test('fenced code block without language, tildes, and markdown inside', () => {
  assert.equal(md('```\n**not bold**\n# not heading\n```'), '<pre><code>**not bold**\n# not heading</code></pre>');
  assert.equal(md('~~~\ncode\n~~~'), '<pre><code>code</code></pre>');
});

test('an unterminated fence (a reply still streaming) renders as code to the end', () => {
  assert.equal(md('Look:\n\n```python\nprint("hi")\nx = 1 < 2'), '<p>Look:</p>\n<pre><code class="language-python">print(&quot;hi&quot;)\nx = 1 &lt; 2</code></pre>');
  assert.equal(md('```'), '<pre><code></code></pre>');
  assert.equal(md('```js'), '<pre><code class="language-js"></code></pre>');
});

test('the language of a fence cannot inject attributes', () => {
  const out = md('```"><script>alert(1)</script>\nx\n```');
  assertSafe(out);
  assert.ok(!out.includes('<script'), out);
});

test('links: http, https and mailto only, with rel and target', () => {
  assert.equal(
    md('[Chorus](https://example.com/a?b=1&c=2)'),
    '<p><a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">Chorus</a></p>',
  );
  assert.equal(
    md('[mail](mailto:a@example.com)'),
    '<p><a href="mailto:a@example.com" target="_blank" rel="noopener noreferrer">mail</a></p>',
  );
  assert.equal(
    md('see https://example.com/x.'),
    '<p>see <a href="https://example.com/x" target="_blank" rel="noopener noreferrer">https://example.com/x</a>.</p>',
  );
  assert.equal(
    md('[wiki](https://en.wikipedia.org/wiki/Rust_(programming_language))'),
    '<p><a href="https://en.wikipedia.org/wiki/Rust_(programming_language)" target="_blank" rel="noopener noreferrer">wiki</a></p>',
  );
  assert.equal(
    md('[**bold** link](http://x.org "title")'),
    '<p><a href="http://x.org" target="_blank" rel="noopener noreferrer"><strong>bold</strong> link</a></p>',
  );
  // A relative or unknown-scheme link keeps its text only.
  assert.equal(md('[rel](/etc/passwd)'), '<p>rel</p>');
});

test('XSS: script tags are shown as text', () => {
  const out = md('<script>alert(1)</script>');
  assert.equal(out, '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
  assertSafe(out);
});

test('XSS: img onerror is shown as text', () => {
  const out = md('Hi <img src=x onerror=alert(1)> there\n\n<img src="x" onerror="alert(1)">');
  assert.ok(!out.includes('<img'), out);
  assert.ok(out.includes('&lt;img src=x onerror=alert(1)&gt;'), out);
  assertSafe(out);
});

test('XSS: javascript:, data: and vbscript: links are not links', () => {
  for (const src of [
    '[click](javascript:alert(1))',
    '[click](JaVaScRiPt:alert(1))',
    '[click]( javascript:alert(1))',
    '[click](&#106;avascript:alert(1))',
    '[click](java\tscript:alert(1))',
    '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
    '[click](vbscript:msgbox(1))',
    '<javascript:alert(1)>',
    '![x](javascript:alert(1))',
  ]) {
    const out = md(src);
    assert.ok(!/href/i.test(out), `${src} -> ${out}`);
    assertSafe(out);
  }
});

test('XSS: a quote cannot break out of href', () => {
  for (const src of [
    '[x](https://a.com/"onmouseover="alert(1))',
    '[x](https://a.com/" onmouseover="alert(1))',
    "[x](https://a.com/'onmouseover='alert(1))",
    'https://a.com/"onmouseover="alert(1)',
    '<https://a.com/"onmouseover="alert(1)>',
    '[x](https://a.com/`"onclick="x`)',
  ]) {
    const out = md(src);
    assertSafe(out);
    for (const [tag] of out.matchAll(/<[^>]*>/g)) {
      assert.ok(!/\son\w+=/i.test(tag.replace(/="[^"]*"/g, '=""')), `${src} -> ${out}`);
    }
  }
});

test('XSS: markup hidden in every construct stays text', () => {
  const payload = '<svg onload=alert(1)>';
  const sources = [
    `# ${payload}`,
    `> ${payload}`,
    `- ${payload}\n- b`,
    `1. ${payload}`,
    `| ${payload} | b |\n|---|---|\n| ${payload} | d |`,
    `**${payload}**`,
    `[${payload}](https://ok.example)`,
    `\`${payload}\``,
    `\`\`\`\n${payload}\n\`\`\``,
    `\\${payload}`,
    `text\u0000with NUL ${payload}`,
  ];
  for (const src of sources) {
    const out = md(src);
    assert.ok(!out.includes('<svg'), `${src} -> ${out}`);
    assertSafe(out);
  }
});

test('placeholder markers in the input cannot smuggle HTML', () => {
  const out = md('`<b>x</b>` then \u00000\u0000 and \u00001\u0000');
  assertSafe(out);
  assert.ok(!out.includes('\u0000'));
});

test('unordered and ordered lists, nested', () => {
  assert.equal(md('- a\n- b'), '<ul>\n<li>a</li>\n<li>b</li>\n</ul>');
  assert.equal(md('* a\n* b'), '<ul>\n<li>a</li>\n<li>b</li>\n</ul>');
  assert.equal(md('1. one\n2. two'), '<ol>\n<li>one</li>\n<li>two</li>\n</ol>');
  assert.equal(md('3. three\n4. four'), '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>');
  assert.equal(
    md('1. one\n   - sub *a*\n   - sub b\n2. two'),
    '<ol>\n<li>one\n<ul>\n<li>sub <em>a</em></li>\n<li>sub b</li>\n</ul></li>\n<li>two</li>\n</ol>',
  );
  assert.equal(md('- a\n  continued'), '<ul>\n<li>a<br>\ncontinued</li>\n</ul>');
  assert.equal(md('Steps:\n1. go'), '<p>Steps:</p>\n<ol>\n<li>go</li>\n</ol>');
});

test('loose lists wrap items in paragraphs', () => {
  assert.equal(md('- a\n\n- b'), '<ul>\n<li><p>a</p></li>\n<li><p>b</p></li>\n</ul>');
});

test('a code block inside a list item', () => {
  const out = md('1. Run:\n   ```sh\n   cargo test\n   ```\n2. Done');
  assert.equal(
    out,
    '<ol>\n<li>Run:\n<pre><code class="language-sh">cargo test</code></pre></li>\n<li>Done</li>\n</ol>',
  );
});

test('blockquotes', () => {
  assert.equal(md('> quoted\n> more'), '<blockquote>\n<p>quoted<br>\nmore</p>\n</blockquote>');
  assert.equal(md('> # Head\n> - item'), '<blockquote>\n<h1>Head</h1>\n<ul>\n<li>item</li>\n</ul>\n</blockquote>');
});

test('horizontal rules', () => {
  assert.equal(md('a\n\n---\n\nb'), '<p>a</p>\n<hr>\n<p>b</p>');
  assert.equal(md('***'), '<hr>');
  assert.equal(md('_ _ _'), '<hr>');
});

test('GFM pipe tables with alignment and code containing pipes', () => {
  const out = md('| a | b | c |\n|:--|:-:|--:|\n| 1 | `x|y` | **z** |\n| only one |');
  assert.equal(
    out,
    '<div class="table-wrap"><table>\n<thead>\n<tr><th class="align-left">a</th><th class="align-center">b</th><th class="align-right">c</th></tr>\n</thead>\n<tbody>\n' +
      '<tr><td class="align-left">1</td><td class="align-center"><code>x|y</code></td><td class="align-right"><strong>z</strong></td></tr>\n' +
      '<tr><td class="align-left">only one</td><td class="align-center"></td><td class="align-right"></td></tr>\n</tbody>\n</table></div>',
  );
  // A half-streamed table (no delimiter row yet) is a paragraph for now.
  assert.equal(md('| a | b |\n|--'), '<p>| a | b |<br>\n|--</p>');
});

test('backslash escapes', () => {
  assert.equal(md('\\*not italic\\*'), '<p>*not italic*</p>');
  assert.equal(md('\\# not heading'), '<p># not heading</p>');
});
