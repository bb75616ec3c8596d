// ONNX Runtime's optimized graph and per-node profile of a model, for what onnxruntime-node 1.20
// cannot do (its session options have neither optimizedModelFilePath nor enableProfiling): a
// small C program on the C API of the same libonnxruntime.so that run_ort.js loads.
//
//   cc -O2 -o /tmp/ort_profile tools/onnx/ort_profile.c -ldl
//   /tmp/ort_profile MODEL.onnx C,H,W BATCH RUNS [--optimized OUT.onnx] [--profile PREFIX]
//                    [--lib path/libonnxruntime.so.1]
//   node tools/onnx/ort_profile_summary.js PREFIX_*.json     # time per operator type and node
//
// It creates a session as run_ort.js does (CPU provider, all graph optimizations, 1 intra-op and
// 1 inter-op thread), writes the optimized graph if asked (ORT's com.microsoft ops such as
// QLinearConv, NhwcMaxPool, QLinearLeakyRelu, the NCHWc float convolutions), runs RUNS batches
// of BATCH images (a fixed pattern in [0, 1]: timing does not depend on the values) and prints
// images/s; with --profile, ORT writes its chrome-trace JSON (one event per node per run) when
// the session is released. Profiling itself costs time per node: compare totals without it.
//
// No ORT header is needed: the C API is a table of function pointers (OrtApi) whose order ORT
// keeps fixed across versions (new entries are only appended), so each function is taken by its
// index in that table (onnxruntime_c_api.h, the order of struct OrtApi).
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void* Status;  // OrtStatus*, NULL on success
typedef struct {
  const void** (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} ApiBase;

// Indices in struct OrtApi (API version 1 onwards).
enum {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSession = 7,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetOptimizedModelFilePath = 11,
  kEnableProfiling = 14,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kSetInterOpNumThreads = 25,
  kSessionGetInputName = 36,
  kSessionGetOutputName = 37,
  kCreateTensorWithDataAsOrtValue = 49,
  kCreateCpuMemoryInfo = 69,
  kGetAllocatorWithDefaultOptions = 78,
  kReleaseSession = 95,
  kReleaseValue = 96,
};
enum { kOrtEnableAll = 99, kOrtArenaAllocator = 1, kOrtMemTypeDefault = 0, kFloat = 1 };

static const void** api;
#define FN(type, index) ((type)api[index])
#define CHECK(call)                                                                        \
  do {                                                                                     \
    Status s_ = (call);                                                                    \
    if (s_) {                                                                              \
      fprintf(stderr, "ort_profile: %s\n",                                                 \
              FN(const char* (*)(Status), kGetErrorMessage)(s_));                          \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

static int usage(void) {
  fprintf(stderr, "usage: ort_profile MODEL.onnx C,H,W BATCH RUNS [--optimized OUT.onnx] "
                  "[--profile PREFIX] [--lib libonnxruntime.so.1]\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 5) return usage();
  const char *model = argv[1], *optimized = NULL, *profile = NULL;
  const char* lib = ".cache/onnxruntime/node_modules/onnxruntime-node/bin/napi-v3/linux/x64/"
                    "libonnxruntime.so.1";
  int64_t shape[4] = {atoi(argv[3]), 0, 0, 0};
  const int runs = atoi(argv[4]);
  if (sscanf(argv[2], "%ld,%ld,%ld", &shape[1], &shape[2], &shape[3]) != 3 || shape[0] < 1 ||
      runs < 1)
    return usage();
  for (int i = 5; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--optimized")) optimized = argv[i + 1];
    else if (!strcmp(argv[i], "--profile")) profile = argv[i + 1];
    else if (!strcmp(argv[i], "--lib")) lib = argv[i + 1];
    else return usage();
  }
  void* h = dlopen(lib, RTLD_NOW);
  if (!h) {
    fprintf(stderr, "ort_profile: %s (run from the repository root after "
                    "scripts/setup_onnxruntime.sh, or give --lib)\n", dlerror());
    return 3;
  }
  const ApiBase* (*get_base)(void) = (const ApiBase* (*)(void))dlsym(h, "OrtGetApiBase");
  if (!get_base || !(api = get_base()->GetApi(1))) {
    fprintf(stderr, "ort_profile: %s has no usable OrtGetApiBase\n", lib);
    return 3;
  }
  void *env, *opts, *session, *meminfo, *input, *alloc;
  CHECK(FN(Status (*)(int, const char*, void**), kCreateEnv)(3, "ort_profile", &env));
  CHECK(FN(Status (*)(void**), kCreateSessionOptions)(&opts));
  CHECK(FN(Status (*)(void*, int), kSetSessionGraphOptimizationLevel)(opts, kOrtEnableAll));
  CHECK(FN(Status (*)(void*, int), kSetIntraOpNumThreads)(opts, 1));
  CHECK(FN(Status (*)(void*, int), kSetInterOpNumThreads)(opts, 1));
  if (optimized) CHECK(FN(Status (*)(void*, const char*), kSetOptimizedModelFilePath)(opts, optimized));
  if (profile) CHECK(FN(Status (*)(void*, const char*), kEnableProfiling)(opts, profile));
  CHECK(FN(Status (*)(void*, const char*, void*, void**), kCreateSession)(env, model, opts, &session));
  CHECK(FN(Status (*)(void**), kGetAllocatorWithDefaultOptions)(&alloc));
  char *in_name, *out_name;
  CHECK(FN(Status (*)(void*, size_t, void*, char**), kSessionGetInputName)(session, 0, alloc, &in_name));
  CHECK(FN(Status (*)(void*, size_t, void*, char**), kSessionGetOutputName)(session, 0, alloc, &out_name));
  const size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
  float* data = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) data[i] = (float)(i % 251) / 250.0f;
  CHECK(FN(Status (*)(int, int, void**), kCreateCpuMemoryInfo)(kOrtArenaAllocator, kOrtMemTypeDefault, &meminfo));
  CHECK(FN(Status (*)(void*, void*, size_t, const int64_t*, size_t, int, void**),
           kCreateTensorWithDataAsOrtValue)(meminfo, data, n * sizeof(float), shape, 4, kFloat, &input));
  typedef Status (*RunFn)(void*, void*, const char* const*, void* const*, size_t, const char* const*,
                          size_t, void**);
  const char* ins[1] = {in_name};
  const char* outs[1] = {out_name};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int r = 0; r < runs; ++r) {
    void* out = NULL;
    CHECK(FN(RunFn, kRun)(session, NULL, ins, &input, 1, outs, 1, &out));
    FN(void (*)(void*), kReleaseValue)(out);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  printf("%s batch %ld: %.0f images/s (%d runs)\n", model, (long)shape[0],
         (double)runs * (double)shape[0] / secs, runs);
  FN(void (*)(void*), kReleaseSession)(session);  // writes the profile
  return 0;
}
