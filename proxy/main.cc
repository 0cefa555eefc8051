#include <malloc.h>

#include "proxy/commands.h"

int main(int argc, char** argv) {
  // svcproxy rebuilds large, short-lived structures (the IR, nft text,
  // netlink batches) on every sync. Keep freed memory in the process instead
  // of unmapping it, so the next sync reuses warm pages rather than faulting
  // in fresh ones (page faults dominated compile time at 10k services).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  return svcproxy::proxy::run_cli(argc, argv);
}
