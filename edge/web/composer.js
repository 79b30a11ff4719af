// The message composer: Enter sends, Shift+Enter adds a line, drafts are
// kept per channel, @handle completion from the channel's members, typing
// notices (throttled), and the quoted message of a "reply privately".

import { h, clear } from './dom.js';
import { userName } from './format.js';
import { avatar } from './view.js';

const TYPING_EVERY_MS = 3000;
const MAX_BODY_CHARS = 40000; // code points, as the server counts
const MAX_COMPLETIONS = 8;

export class Composer {
  // els: {form, input, quoteBar, completions, error}
  // hooks: {send(ch, body, quote), typing(ch), editLast(), candidates(ch)}
  constructor(els, store, hooks) {
    this.els = els;
    this.store = store;
    this.hooks = hooks;
    this.ch = null;
    this.drafts = new Map();
    this.quotes = new Map(); // ch -> quoted message of a reply privately
    this.lastTyping = 0;
    this.matches = [];
    this.active = 0;

    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    els.input.addEventListener('keydown', (e) => this.onKey(e));
    els.input.addEventListener('input', () => this.onInput());
    // focus really left the box (not just the window losing focus): close the list
    els.input.addEventListener('blur', () => setTimeout(() => {
      if (document.activeElement !== els.input) this.closeCompletions();
    }, 150));
  }

  setChannel(ch, { enabled = true, placeholder = '' } = {}) {
    if (this.ch !== null) this.drafts.set(this.ch, this.els.input.value);
    this.ch = ch;
    this.els.input.value = this.drafts.get(ch) || '';
    this.els.error.textContent = '';
    this.els.input.placeholder = placeholder;
    this.els.form.hidden = !enabled;
    this.closeCompletions();
    this.renderQuote();
    this.autosize();
  }

  setQuote(ch, msg) {
    this.quotes.set(ch, msg);
    if (ch === this.ch) this.renderQuote();
  }

  focus() {
    this.els.input.focus();
  }

  renderQuote() {
    const bar = this.els.quoteBar;
    const q = this.quotes.get(this.ch);
    clear(bar);
    bar.hidden = !q;
    if (!q) return;
    const name = userName(this.store.user(q.author), q.author);
    const c = this.store.channel(q.ch);
    bar.append(
      h('div', { class: 'quote-text' },
        h('span', { class: 'quote-label' }, `Replying privately to ${name}`, c ? ` (from #${c.name})` : ''),
        h('span', { class: 'quote-body' }, q.body)),
      h('button', {
        type: 'button', class: 'icon-btn', 'aria-label': 'Cancel the quote', title: 'Cancel the quote',
        onclick: () => { this.quotes.delete(this.ch); this.renderQuote(); this.focus(); },
      }, '×'),
    );
  }

  submit() {
    const body = this.els.input.value.trim();
    if (!body || this.ch === null) return;
    const length = [...body].length;
    if (length > MAX_BODY_CHARS) {
      this.els.error.textContent = `This message is ${(length - MAX_BODY_CHARS).toLocaleString()} characters too long `
        + `(${MAX_BODY_CHARS.toLocaleString()} at most).`;
      return;
    }
    this.els.error.textContent = '';
    const quote = this.quotes.get(this.ch) || null;
    this.hooks.send(this.ch, body, quote);
    this.quotes.delete(this.ch);
    this.drafts.delete(this.ch);
    this.els.input.value = '';
    this.lastTyping = 0;
    this.renderQuote();
    this.autosize();
    this.closeCompletions();
  }

  onKey(e) {
    if (this.matches.length) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const n = this.matches.length;
        this.active = (this.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
        this.renderCompletions();
        return;
      }
      if ((e.key === 'Enter' || e.key === 'Tab') && !e.shiftKey) {
        e.preventDefault();
        this.complete(this.matches[this.active]);
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        e.stopPropagation();
        this.closeCompletions();
        return;
      }
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.submit();
    } else if (e.key === 'ArrowUp' && !this.els.input.value) {
      if (this.hooks.editLast()) e.preventDefault();
    } else if (e.key === 'Escape' && this.quotes.has(this.ch)) {
      e.preventDefault();
      this.quotes.delete(this.ch);
      this.renderQuote();
    }
  }

  onInput() {
    this.autosize();
    const now = Date.now();
    if (this.els.input.value.trim() && now - this.lastTyping > TYPING_EVERY_MS) {
      this.lastTyping = now;
      this.hooks.typing(this.ch);
    }
    this.updateCompletions();
  }

  autosize() {
    const ta = this.els.input;
    ta.style.height = 'auto';
    ta.style.height = `${Math.min(ta.scrollHeight, 200)}px`;
  }

  // ---------------------------------------------------------------- @-completion

  mentionPrefix() {
    const ta = this.els.input;
    const before = ta.value.slice(0, ta.selectionStart);
    const m = /(^|\s)@([a-z0-9._-]*)$/i.exec(before);
    return m ? { prefix: m[2].toLowerCase(), start: before.length - m[2].length - 1 } : null;
  }

  updateCompletions() {
    const at = this.mentionPrefix();
    if (!at) return this.closeCompletions();
    const me = this.store.me.id;
    const pool = this.hooks.candidates(this.ch);
    this.matches = pool
      .filter((u) => u.id !== me && (u.handle.startsWith(at.prefix)
        || (u.display_name || '').toLowerCase().split(/\s+/).some((w) => w.startsWith(at.prefix))))
      .sort((a, b) => a.handle.localeCompare(b.handle))
      .slice(0, MAX_COMPLETIONS);
    this.active = 0;
    this.renderCompletions();
    return undefined;
  }

  renderCompletions() {
    const list = this.els.completions;
    const ta = this.els.input;
    clear(list);
    list.hidden = !this.matches.length;
    ta.setAttribute('aria-expanded', String(!!this.matches.length));
    if (!this.matches.length) {
      ta.removeAttribute('aria-activedescendant');
      return;
    }
    this.matches.forEach((u, i) => {
      const li = h('li', {
        id: `completion-${u.id}`, role: 'option', class: 'completion', 'aria-selected': String(i === this.active),
        onmousedown: (e) => { e.preventDefault(); this.complete(u); },
      }, avatar(u.id, userName(u), 20), h('strong', {}, `@${u.handle}`), ' ', h('span', { class: 'muted-text' }, u.display_name || ''));
      list.append(li);
    });
    ta.setAttribute('aria-activedescendant', `completion-${this.matches[this.active].id}`);
  }

  complete(user) {
    const at = this.mentionPrefix();
    const ta = this.els.input;
    if (!at || !user) return this.closeCompletions();
    const after = ta.value.slice(ta.selectionStart);
    const insert = `@${user.handle} `;
    ta.value = ta.value.slice(0, at.start) + insert + after;
    const caret = at.start + insert.length;
    ta.setSelectionRange(caret, caret);
    this.closeCompletions();
    ta.focus();
    return undefined;
  }

  closeCompletions() {
    this.matches = [];
    this.els.completions.hidden = true;
    clear(this.els.completions);
    this.els.input.setAttribute('aria-expanded', 'false');
    this.els.input.removeAttribute('aria-activedescendant');
  }
}
