/*
 * How the model loader (model.c) opens a Hugging Face directory with its weights resident.
 * Private to src/engine.
 */
#ifndef SYN_ENGINE_SAFETENSORS_IMPL_H
#define SYN_ENGINE_SAFETENSORS_IMPL_H

#include "common/filemap.h"
#include "synapse/safetensors.h"

/* syn_hf_dir_open with every shard brought into memory as mode says (syn_hf_dir_open: mapped). */
int syn_hf_dir_open_mode(const char *dir, enum syn_filemap_mode mode, struct syn_hf_dir **out,
                         char *err, size_t errlen);

#endif
