// The tools panel of the chat client: which MCP tools the current conversation
// offers its model, and the MCP resources and prompts a user can bring into a
// message (attach a resource's text, start from a rendered prompt).
// Talks only to the JSON API; the conversation id comes from the URL (#c=ID).

import { api } from './api.js';
import { $, conversationId, el } from './dom.js';

function insertIntoInput(text, replace) {
  const input = $('input');
  input.value = replace || !input.value ? text : `${input.value}\n\n${text}`;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  input.focus();
}

function status(text) {
  $('tools-status').textContent = text;
}

async function renderSelection(box) {
  box.replaceChildren();
  const conv = conversationId();
  const { tools } = await api('GET', '/api/tools');
  if (!tools.length) {
    box.append(el('p', 'tools-note', 'No tools are available to you.'));
    return;
  }
  if (!conv) {
    box.append(el('p', 'tools-note', 'Send a first message, then choose the tools of this chat.'));
    return;
  }
  const selected = new Set((await api('GET', `/api/conversations/${conv}/tools`)).tools);
  const servers = [...new Set(tools.map((t) => t.source))];
  for (const server of servers) {
    const label = el('label', 'tools-server');
    const box1 = el('input');
    box1.type = 'checkbox';
    box1.checked = selected.has(server);
    box1.dataset.server = server;
    const count = tools.filter((t) => t.source === server).length;
    label.append(box1, el('span', '', ` ${server} (${count} tools)`));
    label.title = tools
      .filter((t) => t.source === server)
      .map((t) => t.tool)
      .join(', ');
    box1.addEventListener('change', async () => {
      const chosen = [...box.querySelectorAll('input[data-server]')]
        .filter((b) => b.checked)
        .map((b) => b.dataset.server);
      try {
        await api('PUT', `/api/conversations/${conv}/tools`, { tools: chosen });
        status('Tools saved for this chat.');
      } catch (e) {
        status(`Could not save: ${e.message}`);
      }
    });
    box.append(label);
  }
}

async function renderResources(box) {
  box.replaceChildren();
  const { resources } = await api('GET', '/api/mcp/resources');
  if (!resources.length) box.append(el('p', 'tools-note', 'No resources.'));
  for (const r of resources.slice(0, 50)) {
    const row = el('div', 'tools-row');
    const attach = el('button', 'btn btn-outline btn-small', 'Attach');
    attach.type = 'button';
    attach.addEventListener('click', async () => {
      try {
        const got = await api('POST', '/api/mcp/resources/read', { server: r.server, uri: r.uri });
        insertIntoInput(`[resource ${r.uri}]\n\`\`\`\n${got.text}\n\`\`\``, false);
        status(`Attached ${r.name}.`);
      } catch (e) {
        status(`Could not read ${r.uri}: ${e.message}`);
      }
    });
    row.append(attach, el('span', 'tools-name', `${r.server}: ${r.name}`));
    row.title = r.description || r.uri;
    box.append(row);
  }
}

async function renderPrompts(box) {
  box.replaceChildren();
  const { prompts } = await api('GET', '/api/mcp/prompts');
  if (!prompts.length) box.append(el('p', 'tools-note', 'No prompts.'));
  for (const p of prompts) {
    const row = el('form', 'tools-row');
    const inputs = p.arguments.map((a) => {
      const i = el('input', 'tools-arg');
      i.placeholder = a.name + (a.required ? ' *' : '');
      i.title = a.description || a.name;
      i.required = a.required;
      i.dataset.name = a.name;
      return i;
    });
    const use = el('button', 'btn btn-outline btn-small', 'Use');
    use.type = 'submit';
    row.addEventListener('submit', async (e) => {
      e.preventDefault();
      const args = {};
      for (const i of inputs) if (i.value) args[i.dataset.name] = i.value;
      try {
        const got = await api('POST', '/api/mcp/prompts/get', { server: p.server, name: p.name, arguments: args });
        insertIntoInput(got.messages.filter((m) => m.role === 'user').map((m) => m.text).join('\n\n'), true);
        status(`Prompt ${p.name} is in the message box.`);
      } catch (err) {
        status(`Could not use ${p.name}: ${err.message}`);
      }
    });
    row.append(use, el('span', 'tools-name', `${p.server}: ${p.name}`), ...inputs);
    row.title = p.description || p.name;
    box.append(row);
  }
}

async function open() {
  const panel = $('tools-panel');
  panel.hidden = !panel.hidden;
  if (panel.hidden) return;
  status('');
  try {
    await Promise.all([
      renderSelection($('tools-selection')),
      renderResources($('tools-resources')),
      renderPrompts($('tools-prompts')),
    ]);
  } catch (e) {
    status(`Could not load tools: ${e.message}`);
  }
}

$('tools-toggle').addEventListener('click', open);
window.addEventListener('hashchange', () => {
  $('tools-panel').hidden = true;
});
