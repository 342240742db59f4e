import { runStudy } from '../../src/engine/run.js';
import { Store } from '../../src/store/store.js';
import { loadStudy } from '../../src/study/load.js';
import { FakeBackend } from './fake-backend.js';

/**
 * `node fake-run.js STUDY DB FIO_MS`: runStudy on a fake backend whose fio takes FIO_MS, in a process
 * of its own, so that a test can interrupt it as a user would. Prints each run event as a JSON line.
 */
const [studyFile, db, fioMs] = process.argv.slice(2);
const backend = new FakeBackend({ fioMs: Number(fioMs) });
await runStudy(loadStudy(studyFile as string), {
  store: Store.open(db as string),
  accelerator: { accel: 'tcg', reason: 'fake backend' },
  backends: async () => backend,
  onEvent: (e) => process.stdout.write(`${JSON.stringify(e)}\n`),
});
