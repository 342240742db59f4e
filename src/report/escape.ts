import { printable } from '../util/errors.js';

/**
 * Escaping for each context a report writes names into. Names come from the store (a study's
 * workload and variant names, an imported file's job names, a run's label): someone else's text.
 */

/** HTML text and double- or single-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/**
 * Markdown text inside a line (summary.md): one line (control characters shown as escapes), and the
 * punctuation that opens emphasis, code, a link, raw HTML, an entity or a table cell backslash-escaped.
 * Names never start a line here, so list and heading markers need no escape.
 */
export function escapeMarkdown(s: string): string {
  return printable(s).replace(/[\\`*_[\]<>#|~&]/g, '\\$&');
}

/**
 * A file-name-safe id made from a name: letters, digits, '-' and '_', at most 80 characters, never
 * empty and never a path. Chart files are named from these, never from the names themselves.
 */
export function slug(name: string): string {
  const s = name
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 80);
  return s === '' ? 'x' : s;
}
