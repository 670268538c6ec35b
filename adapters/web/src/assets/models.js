// The model picker: the models the server offers, the one chosen (remembered in
// localStorage for new chats), and their labels.

import { api } from './api.js';
import { el } from './dom.js';
import { showError, state, ui } from './state.js';

const MODEL_KEY = 'chorus.model';

export async function loadModels() {
  let r;
  try {
    r = await api('GET', '/api/models');
  } catch (err) {
    showError(err);
    return;
  }
  state.models = r.models || [];
  state.defaultModel = r.default_model || '';
  ui.modelSelect.replaceChildren(
    ...state.models.map((m) => {
      const o = el('option', '', m.label || m.id);
      o.value = m.id;
      return o;
    }),
  );
  ui.modelSelect.disabled = state.models.length === 0;
  ui.scriptedNotice.hidden = !(state.models.length > 0 && state.models.every((m) => m.scripted));
  selectRememberedModel();
}

/** Selects the model last chosen in this browser (for a new chat), else the default. */
export function selectRememberedModel() {
  selectModel(localStorage.getItem(MODEL_KEY) || state.defaultModel);
}

/** Remembers the chosen model for the next new chat. */
export function rememberModel() {
  localStorage.setItem(MODEL_KEY, ui.modelSelect.value);
}

/** Selects the model `id`, or the default one when `id` is not offered. */
export function selectModel(id) {
  if (id && state.models.some((m) => m.id === id)) ui.modelSelect.value = id;
  else if (state.models.some((m) => m.id === state.defaultModel)) ui.modelSelect.value = state.defaultModel;
}

export function selectedModel() {
  return ui.modelSelect.value || undefined;
}

export function modelLabel(id) {
  const m = state.models.find((x) => x.id === id);
  return m ? m.label || m.id : id || '';
}
