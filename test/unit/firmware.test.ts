import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { GuestExecResult } from '../../src/guest/vm.js';
import { LOCAL_HOST } from '../../src/host/access.js';
import { nvramPath, stagedGuestPaths } from '../../src/libvirt/stage.js';
import { domainXml } from '../../src/libvirt/xml.js';
import { FIRMWARE_NODES, qemuArgv } from '../../src/qemu/argv.js';
import {
  guestFirmwareCheck,
  type Ovmf,
  ovmfFromDescriptor,
  pflashCheck,
  studyOvmf,
} from '../../src/qemu/firmware.js';
import type { Monitor } from '../../src/qemu/verify.js';
import { GUEST_MIN_MEMORY_MIB_UEFI } from '../../src/study/guest-release.js';
import { fitGuestToHost } from '../../src/study/guest-shape.js';
import { parseStudy } from '../../src/study/load.js';
import { ConfigError, UserError } from '../../src/util/errors.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/firmware/', import.meta.url));
const fixture = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'kvmio-firmware-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const DEBIAN_OVMF: Ovmf = {
  code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd',
  descriptor: '60-edk2-x86_64.json',
};

function study(guest: string, extra = '') {
  return parseStudy(`guest: ${guest}\n${extra}workloads: [ { kind: fio, runtime: 2s } ]\n`, 'fw.yaml');
}

describe('guest.firmware in a study', () => {
  test('bios by default; uefi when asked', () => {
    assert.equal(study('{ vcpus: 1 }').guest.firmware, 'bios');
    assert.equal(study('{ firmware: uefi }').guest.firmware, 'uefi');
    assert.equal(study('{ firmware: bios }').guest.firmware, 'bios');
  });

  test('anything else is refused with the file, the key and what is allowed', () => {
    for (const bad of ['efi', 'UEFI', '1', '[uefi]']) {
      assert.throws(
        () => study(`{ firmware: ${bad} }`),
        (e: Error) =>
          e instanceof ConfigError &&
          e.message.startsWith('fw.yaml:') &&
          e.message.includes('guest.firmware') &&
          e.message.includes('allowed: bios, uefi'),
      );
    }
  });

  test('uefi with machine pc (i440fx) is refused: OVMF runs on q35 here', () => {
    assert.throws(
      () => study('{ firmware: uefi, machine: pc }'),
      (e: Error) => e instanceof ConfigError && /guest\.firmware.*q35/.test(e.message),
    );
    assert.equal(study('{ firmware: bios, machine: pc }').guest.machine, 'pc');
  });

  test('a uefi guest needs 768 MiB: less is refused with the reason', () => {
    assert.equal(study('{ firmware: uefi, memory: 768MiB }').guest.memoryBytes, 768 * 2 ** 20);
    assert.throws(
      () => study('{ firmware: uefi, memory: 512MiB }'),
      (e: Error) => e instanceof ConfigError && /guest\.memory.*uefi.*768 MiB/.test(e.message),
    );
  });

  test('fit_to_host never shrinks a uefi guest below its 768 MiB', () => {
    const shape = { vcpus: 1, memoryBytes: 8 * 1024 ** 3, count: 1 };
    const fit = fitGuestToHost(
      shape,
      { cpus: [0, 1], memoryBytes: 768 * 1024 ** 2 },
      GUEST_MIN_MEMORY_MIB_UEFI,
    );
    assert.equal(fit.memoryBytes, 768 * 1024 ** 2);
    assert.match(fit.notes[2]!, /not below the guest's minimum of 768 MiB/);
  });

  test("a user's own domain keeps its own firmware: the key is refused", () => {
    assert.throws(
      () => study('{ domain: myvm, firmware: uefi }', 'backend: libvirt\n'),
      (e: Error) => e instanceof ConfigError && /guest\.firmware.*<os>/.test(e.message),
    );
  });
});

describe('OVMF from QEMU firmware descriptors (Debian 12 ovmf package)', () => {
  test('the plain 4M build pairs code and variable store template', () => {
    assert.deepEqual(ovmfFromDescriptor(fixture('60-edk2-x86_64.json'), '60-edk2-x86_64.json'), DEBIAN_OVMF);
  });

  test('Secure Boot builds are not picked, with the reason', () => {
    for (const name of ['40-edk2-x86_64-secure-enrolled.json', '50-edk2-x86_64-secure.json']) {
      const why = ovmfFromDescriptor(fixture(name), name);
      assert.equal(typeof why, 'string', name);
      assert.match(String(why), /secure-boot|requires-smm/);
    }
  });

  test('a hostile or foreign descriptor is refused, never followed', () => {
    const base = JSON.parse(fixture('60-edk2-x86_64.json'));
    const variants: Array<[string, unknown]> = [
      ['not JSON', '{'],
      ['relative path', { ...base, mapping: { ...base.mapping, executable: { filename: 'OVMF.fd' } } }],
      [
        'path with a space',
        { ...base, mapping: { ...base.mapping, executable: { filename: '/x y/OVMF.fd', format: 'raw' } } },
      ],
      [
        'qcow2 image',
        { ...base, mapping: { ...base.mapping, executable: { filename: '/a/b.qcow2', format: 'qcow2' } } },
      ],
      ['memory device', { ...base, mapping: { device: 'memory', filename: '/a/OVMF.fd' } }],
      ['BIOS', { ...base, 'interface-types': ['bios'] }],
      ['i440fx only', { ...base, targets: [{ architecture: 'x86_64', machines: ['pc-i440fx-*'] }] }],
      ['aarch64', { ...base, targets: [{ architecture: 'aarch64', machines: ['virt-*'] }] }],
      ['no template', { ...base, mapping: { device: 'flash', executable: base.mapping.executable } }],
      ['huge', `${' '.repeat(70_000)}{}`],
    ];
    for (const [what, d] of variants) {
      const text = typeof d === 'string' ? d : JSON.stringify(d);
      assert.equal(typeof ovmfFromDescriptor(text, 'x.json'), 'string', what);
    }
  });
});

describe('a host without OVMF', () => {
  // What `ls` answers on a host without the firmware descriptor directories (exit 2, no names).
  const bare = {
    ...LOCAL_HOST,
    label: 'a host without ovmf',
    run: async (argv: readonly string[]) => ({
      code: argv[0] === 'ls' ? 2 : 1,
      stdout: '',
      stderr: `ls: cannot access '${argv[2]}': No such file or directory`,
      signal: null,
      timedOut: false,
    }),
  } as unknown as typeof LOCAL_HOST;

  test('a uefi study is refused before any boot, naming the key and the package to install', async () => {
    await assert.rejects(
      studyOvmf(study('{ firmware: uefi }'), bare),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message.startsWith('fw.yaml: guest.firmware: uefi needs OVMF') &&
        /install with: .*(ovmf|edk2-ovmf|qemu-ovmf-x86_64)/.test(e.message),
    );
  });

  test('a bios study needs no OVMF', async () => {
    assert.equal(await studyOvmf(study('{ firmware: bios }'), bare), undefined);
  });
});

describe('direct QEMU argv', () => {
  const variant = study('{ firmware: uefi }').variants[0]!;
  const opts = (guest: string) => ({
    name: 'kvmio-t',
    study: study(guest),
    variant,
    accel: 'tcg' as const,
    runtimeDir: '/run/kvmio/t',
  });

  test('uefi: OVMF code read-only and the VM own store, given to the machine as pflash0/1', () => {
    const argv = qemuArgv({
      ...opts('{ firmware: uefi }'),
      firmware: { code: DEBIAN_OVMF.code, vars: '/run/kvmio/t/OVMF_VARS.fd' },
    });
    const blockdevs = argv
      .flatMap((a, i) => (argv[i - 1] === '-blockdev' ? [JSON.parse(a) as Record<string, unknown>] : []))
      .filter((b) => String(b['node-name']).startsWith('kvmio-fw'));
    assert.deepEqual(blockdevs, [
      { driver: 'file', 'node-name': FIRMWARE_NODES.code, filename: DEBIAN_OVMF.code, 'read-only': true },
      { driver: 'file', 'node-name': FIRMWARE_NODES.vars, filename: '/run/kvmio/t/OVMF_VARS.fd' },
    ]);
    const machines = argv.flatMap((a, i) => (argv[i - 1] === '-machine' ? [a] : []));
    assert.deepEqual(machines.slice(1), ['pflash0=kvmio-fw-code,pflash1=kvmio-fw-vars']);
    assert.match(machines[0]!, /^q35/);
    // The firmware still boots the embedded guest's kernel from fw_cfg.
    assert.ok(argv.includes('-kernel') || !argv.includes('-append'));
  });

  test('bios: no pflash, QEMU keeps SeaBIOS', () => {
    const argv = qemuArgv(opts('{ firmware: bios }'));
    assert.ok(!argv.some((a) => a.includes('pflash') || a.includes('kvmio-fw')));
  });

  test('uefi without OVMF images is refused, not booted as bios', () => {
    assert.throws(() => qemuArgv(opts('{ firmware: uefi }')), UserError);
  });
});

describe('libvirt domain XML', () => {
  const guest = { ...stagedGuestPaths('0123456789abcdef0123'), cmdline: 'console=ttyS0 panic=-1' };
  const s = study('{ firmware: uefi }', 'backend: libvirt\n');
  const base = { study: s, variant: s.variants[0]!, guest, accel: 'tcg' as const, name: 'kvmio-fw' };
  const firmware = { ...DEBIAN_OVMF, nvram: nvramPath('kvmio-fw') };

  test('uefi: explicit read-only pflash loader and the domain own store made from the template', () => {
    const xml = domainXml({ ...base, firmware });
    assert.match(xml, /<loader readonly='yes' type='pflash'>\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd<\/loader>/);
    assert.match(
      xml,
      /<nvram template='\/usr\/share\/OVMF\/OVMF_VARS_4M\.fd'>\/var\/lib\/kvmio\/kvmio-fw_VARS\.fd<\/nvram>/,
    );
    assert.match(xml, /machine='q35'/);
    assert.doesNotMatch(xml, /firmware=/);
  });

  test('uefi validates by libvirt schema (virt-xml-validate)', {
    skip:
      spawnSync('virt-xml-validate', ['--help']).error !== undefined && 'virt-xml-validate is not installed',
  }, () => {
    const file = join(scratch, 'uefi.xml');
    writeFileSync(file, domainXml({ ...base, firmware }));
    const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  test('bios has no loader; uefi without OVMF or on i440fx is refused', () => {
    const bios = study('{ firmware: bios }', 'backend: libvirt\n');
    assert.doesNotMatch(domainXml({ ...base, study: bios, variant: bios.variants[0]! }), /<loader|<nvram/);
    assert.throws(() => domainXml(base), UserError);
    assert.throws(
      () => domainXml({ ...base, firmware, study: { ...s, guest: { ...s.guest, machine: 'pc' } } }),
      (e: Error) => e instanceof UserError && /q35/.test(e.message),
    );
  });
});

describe('live check of the firmware (recorded query-block replies)', () => {
  const replies = readdirSync(fixtures).filter((f) => f.startsWith('query-block-'));
  const monitorOf =
    (file: string): Monitor =>
    async <T>(command: string) => {
      assert.equal(command, 'query-block');
      return JSON.parse(fixture(file)) as T;
    };

  test('fixtures are there', () => assert.ok(replies.length >= 3, replies.join(', ')));

  for (const file of replies.filter((f) => f.includes('uefi'))) {
    test(`${file}: a uefi guest passes, a bios study fails on it`, async () => {
      const ok = await pflashCheck(monitorOf(file), 'uefi', DEBIAN_OVMF.code);
      assert.deepEqual(ok.problems, []);
      assert.match(ok.seen.join(' '), /flash0 \/usr\/share\/OVMF\/OVMF_CODE_4M\.fd read-only/);
      const wrongCode = await pflashCheck(monitorOf(file), 'uefi', '/usr/share/OVMF/OVMF_CODE.fd');
      assert.match(wrongCode.problems.join(), /expected OVMF's code/);
      const bios = await pflashCheck(monitorOf(file), 'bios');
      assert.match(bios.problems.join(), /bios asked, but QEMU has pflash/);
    });
  }

  test('query-block-bios-7.2.json: a bios guest passes, a uefi study fails on it', async () => {
    assert.deepEqual((await pflashCheck(monitorOf('query-block-bios-7.2.json'), 'bios')).problems, []);
    const uefi = await pflashCheck(monitorOf('query-block-bios-7.2.json'), 'uefi', DEBIAN_OVMF.code);
    assert.match(uefi.problems.join(), /no pflash0/);
    assert.match(uefi.problems.join(), /no pflash1/);
  });

  test('the guest: /sys/firmware/efi decides, a failed check is not a pass', async () => {
    const exec = (exitCode: number) => async (argv: string[]) => {
      assert.deepEqual(argv, ['test', '-d', '/sys/firmware/efi']);
      return { exitCode, stdout: '', stderr: '' } satisfies GuestExecResult;
    };
    assert.deepEqual((await guestFirmwareCheck(exec(0), 'uefi')).problems, []);
    assert.deepEqual((await guestFirmwareCheck(exec(1), 'bios')).problems, []);
    assert.match((await guestFirmwareCheck(exec(1), 'uefi')).problems.join(), /booted without UEFI/);
    assert.match((await guestFirmwareCheck(exec(0), 'bios')).problems.join(), /booted under UEFI/);
    assert.match((await guestFirmwareCheck(exec(127), 'uefi')).problems.join(), /could not be checked/);
  });
});
