/* Only the types common.cuh names (see cuda_runtime.h here); the emulator runs no products. */
#ifndef EMU_CUBLAS_V2_H
#define EMU_CUBLAS_V2_H
#include "cuda_runtime.h"
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3 };
typedef void *cublasHandle_t;
#endif
