import { readFileSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { UserError } from '../util/errors.js';
import { listPresets, presetFile } from './presets.js';
import { studyBaseDir, validateStudy } from './schema.js';
import type { Study } from './types.js';
import { parseYaml } from './yaml-source.js';

function nameFromFile(file: string): string {
  const stem = basename(file, extname(file)).replace(/[^A-Za-z0-9._-]/g, '-');
  return /^[A-Za-z0-9]/.test(stem) ? stem.slice(0, 64) : `study-${stem}`.slice(0, 64);
}

/**
 * Validates study YAML text; `source` names it in error messages and is the default study name.
 * Relative paths in the study (guest.domain) resolve against `baseDir` (default: the source's directory).
 */
export function parseStudy(text: string, source: string, baseDir = studyBaseDir(source)): Study {
  return validateStudy(parseYaml(text, source), nameFromFile(source), baseDir);
}

/** Reads and validates a study file. Throws UserError/ConfigError naming the file, line and key path. */
export function loadStudy(file: string): Study {
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new UserError(`${file}: is a directory, not a study file`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new UserError(`${file}: no such file (presets: ${listPresets().join(', ')})`);
    if (code === 'EACCES') throw new UserError(`${file}: permission denied`);
    throw new UserError(`${file}: cannot read: ${(err as Error).message}`);
  }
  return parseStudy(text, file);
}

/** Loads a preset shipped in presets/NAME.yaml; an unknown name lists the presets. */
export function loadPreset(name: string): Study {
  const file = presetFile(name);
  const study = parseStudy(readFileSync(file, 'utf8'), file);
  study.source = `preset:${name}`;
  return study;
}

/** The `FILE|--preset NAME` argument pair of plan/run/argv/xml: exactly one must be given. */
export function loadStudyArg(file: string | undefined, preset: string | undefined): Study {
  if (file !== undefined && preset !== undefined) {
    throw new UserError(`give a study FILE or --preset NAME, not both (got ${file} and --preset ${preset})`);
  }
  if (preset !== undefined) return loadPreset(preset);
  if (file !== undefined) return loadStudy(file);
  throw new UserError(`give a study FILE or --preset NAME (presets: ${listPresets().join(', ')})`);
}
