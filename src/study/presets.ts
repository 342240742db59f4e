import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { packageFile } from '../util/paths.js';

/** presets/ at the package root, wherever the package is (a clone or an npm install), never the cwd. */
export function presetsDir(): string {
  return packageFile('presets');
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
