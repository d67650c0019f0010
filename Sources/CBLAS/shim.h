#include <cblas.h>
/* OpenBLAS extension: its thread count is a process-wide setting. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
