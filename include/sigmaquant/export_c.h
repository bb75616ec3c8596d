// C export (issue #6): a quantized model as portable C99 source — the weights bit-packed at each
// layer's own width plus a small integer-only runtime — that a plain C compiler builds and that
// reproduces the integer engine (GraphExecutor) bit-exactly. Layout of the generated files, API and
// build: docs/engine.md, "C export".
//
//   sq::export_c(qm, "out/lenet5_c");   // integerizes, then writes into out/lenet5_c/:
//     model.h         float-in / logits-out API: void sq_model_run(const float* image, float*
//     logits) model_data.c    packed weights, biases, requantization constants, the network's steps
//     sq_runtime.h/.c the portable integer kernels (no malloc: buffers sized at export time)
//     main_example.c  demo: raw float32 images from a file → predicted class per image
//     Makefile        `make` builds the demo with $(CC) -std=c99
//
// `image` is one sample CHW exactly as stored in the dataset (not normalized): the runtime
// normalizes with the graph's input_mean/input_std and quantizes at the input quantization point.
#pragma once

#include <string>

#include "sigmaquant/qmodel.h"

namespace sq {

// Writes the files above into out_dir as one set: they are written into a staging directory
// next to it (OUT.tmp.<pid>) that is renamed to out_dir when out_dir does not exist yet; into an
// existing out_dir the staged files are moved one by one once all are written and every
// destination name is free or a regular file. A failure before that leaves out_dir as it was
// and removes the staging directory (so no model.h without its model_data.c). Throws sq::Error
// naming the node if the graph holds something the integer engine cannot run (checked before
// anything is written), or naming the path that cannot be written.
// A batchnorm that is the input's only reader is folded into the input normalization first
// (fold_input_batchnorm, engine.h), as the engine does.
// The kernels the exported runtime compiles to (`--c-target`):
//   Portable    plain C99 loops, any C compiler (the default; the files above, unchanged)
//   CortexMDsp  the conv/linear dot products on the Cortex-M DSP extension (SMLAD, dual 16-bit
//               multiply-accumulate, as CMSIS-NN): sq_runtime.c starts with
//               `#define SQ_TARGET_CORTEX_M_DSP 1` and refuses (#error) a compiler without
//               __ARM_FEATURE_DSP (Cortex-M4, M7, M33 with DSP). Same integers, same logits bit for
//               bit (mcu/run_qemu.sh checks both under QEMU; docs/mcu.md).
enum class CTarget { Portable, CortexMDsp };
// "portable" or "cortex-m-dsp"; anything else throws sq::Error naming the value and the choices.
CTarget parse_c_target(const std::string& name);

void export_c(const QuantModel& qm, const std::string& out_dir, CTarget target = CTarget::Portable);

}  // namespace sq
