#include <kiln/backends/cpu/parallel.h>

#include <cstdlib>

namespace kiln::cpu {
namespace {

int configured_threads() {
  int n = omp_get_num_procs();
  if (const char* s = std::getenv("KILN_NUM_THREADS")) {
    const int v = std::atoi(s);
    if (v > 0) n = v;
  }
  omp_set_num_threads(n);  // oneDNN reads the same OpenMP setting
  return n;
}

const int g_threads = configured_threads();

}  // namespace

int num_threads() {
  return g_threads;
}

}  // namespace kiln::cpu
