/* Host stand-ins for cuda_bf16.h (see cuda_runtime.h here): round to nearest even. */
#ifndef EMU_CUDA_BF16_H
#define EMU_CUDA_BF16_H
#include "cuda_runtime.h"
extern "C" {
float syn_bf16_to_f32(uint16_t h);
uint16_t syn_f32_to_bf16(float f);
}
struct __nv_bfloat16 {
    unsigned short x;
};
inline float __bfloat162float(__nv_bfloat16 h)
{
    return syn_bf16_to_f32(h.x);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    return __nv_bfloat16{syn_f32_to_bf16(f)};
}
#endif
