#!/usr/bin/env python3
"""Runs a command with some system calls failing with EPERM (seccomp filter), e.g. to make QEMU's
io_uring or Linux AIO setup fail for this one process as a seccomp profile or sysctl would.

usage: deny-syscalls.py io_uring_setup,io_setup -- COMMAND ARGS...   (x86_64 only)
"""
import ctypes
import os
import struct
import sys

NR = {'io_setup': 206, 'io_uring_setup': 425}
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_ALLOW, RET_ERRNO_EPERM, RET_KILL = 0x7FFF0000, 0x00050000 | 1, 0
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06


def insn(code, jt, jf, k):
    return struct.pack('HBBI', code, jt, jf, k)


names, argv = sys.argv[1].split(','), sys.argv[3:]
prog = [insn(LD_W_ABS, 0, 0, 4), insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), insn(RET_K, 0, 0, RET_KILL)]
prog.append(insn(LD_W_ABS, 0, 0, 0))
for name in names:
    prog += [insn(JEQ_K, 0, 1, NR[name]), insn(RET_K, 0, 0, RET_ERRNO_EPERM)]
prog.append(insn(RET_K, 0, 0, RET_ALLOW))
code = b''.join(prog)
buf = ctypes.create_string_buffer(code)


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


libc = ctypes.CDLL(None, use_errno=True)
fprog = SockFprog(len(prog), ctypes.addressof(buf))
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0
) != 0:
    sys.exit(f'deny-syscalls: seccomp failed: {os.strerror(ctypes.get_errno())}')
os.execvp(argv[0], argv)
