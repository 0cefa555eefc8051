// Writes the HTML page of tests/loadtest/sample_report.h to argv[1]: the
// e2e test loads it in headless Chromium (every part of the page, including
// violations and endpoint changes, which a plain run does not produce).
#include <fstream>
#include <iostream>

#include "loadtest/html_report.h"
#include "sample_report.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: loadtest_html_sample OUT.html\n";
    return 2;
  }
  std::ofstream out(argv[1], std::ios::binary);
  out << svcproxy::loadtest::render_html(svcproxy::loadtest::testing::sample_report());
  out.close();
  if (!out) {
    std::cerr << "loadtest_html_sample: cannot write " << argv[1] << "\n";
    return 1;
  }
  return 0;
}
