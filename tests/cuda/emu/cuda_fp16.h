/* Host stand-ins for cuda_fp16.h (see cuda_runtime.h here): round to nearest even. */
#ifndef EMU_CUDA_FP16_H
#define EMU_CUDA_FP16_H
#include "cuda_runtime.h"
extern "C" {
float syn_f16_to_f32(uint16_t h);
uint16_t syn_f32_to_f16(float f);
}
struct __half {
    unsigned short x;
};
inline float __half2float(__half h)
{
    return syn_f16_to_f32(h.x);
}
inline __half __float2half_rn(float f)
{
    return __half{syn_f32_to_f16(f)};
}
inline __half __ushort_as_half(unsigned short u)
{
    return __half{u};
}
#endif
