import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';

/** presets/ at the package root; this file runs from dist/src/study/. */
export function presetsDir(): string {
  const fromDist = fileURLToPath(new URL('../../../presets/', import.meta.url));
  return existsSync(fromDist) ? fromDist : fileURLToPath(new URL('../../presets/', import.meta.url));
}

/** Names of the presets shipped in presets/*.yaml, sorted. */
export function listPresets(): string[] {
  return readdirSync(presetsDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/** The file of a preset; an unknown name is a UserError listing the presets. */
export function presetFile(name: string): string {
  const names = listPresets();
  if (!names.includes(name)) {
    throw new UserError(`no preset named "${name}"; presets: ${names.join(', ')}`);
  }
  return join(presetsDir(), `${name}.yaml`);
}
