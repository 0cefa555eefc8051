#!/usr/bin/env python3
"""Runs a command as on a kernel without nf_tables: a seccomp filter makes
socket(AF_NETLINK, *, NETLINK_NETFILTER) fail with EPROTONOSUPPORT, the
answer of a kernel built without nfnetlink (netlink_create finds no such
protocol). Nothing else changes: the command keeps its capabilities (the
userspace proxy needs CAP_NET_ADMIN for its svcproxy0 addresses) and
rtnetlink works. svcproxy itself knows nothing of this.

Usage: without_nftables.py COMMAND [ARGS...]   (x86_64 only; Python 3 stdlib)
"""

import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
NR_SOCKET_X86_64 = 41
AF_NETLINK = 16
NETLINK_NETFILTER = 12
EPROTONOSUPPORT = 93

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (little endian:
# the low 32 bits of args[i] are at 16 + 8 * i).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


def insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def filter_program() -> bytes:
    allow_at = 9  # index of the final ALLOW; jumps are relative to the next instruction
    prog = [
        insn(BPF_LD_W_ABS, 0, 0, 4),                            # 0: arch
        insn(BPF_JEQ_K, 0, allow_at - 2, AUDIT_ARCH_X86_64),    # 1
        insn(BPF_LD_W_ABS, 0, 0, 0),                            # 2: nr
        insn(BPF_JEQ_K, 0, allow_at - 4, NR_SOCKET_X86_64),     # 3
        insn(BPF_LD_W_ABS, 0, 0, 16),                           # 4: domain
        insn(BPF_JEQ_K, 0, allow_at - 6, AF_NETLINK),           # 5
        insn(BPF_LD_W_ABS, 0, 0, 32),                           # 6: protocol
        insn(BPF_JEQ_K, 0, 1, NETLINK_NETFILTER),               # 7 -> 8 refuse, 9 allow
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPROTONOSUPPORT),  # 8
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),               # 9
    ]
    return b"".join(prog)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if os.uname().machine != "x86_64":
        print("without_nftables.py: x86_64 only", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    code = filter_program()
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        print(f"without_nftables.py: seccomp: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
