#include "proxy/commands.h"

int main(int argc, char** argv) { return svcproxy::proxy::run_cli(argc, argv); }
