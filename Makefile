# The two commands of the README:
#   make run   — the main job on the default data (Fashion-MNIST)
#   make test  — the whole test suite (CTest + GoogleTest)
# Both install missing Debian packages (scripts/setup.sh, idempotent), configure and build.

BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
RUN_DIR  ?= runs/default
# Torch-free unit tests under AddressSanitizer + UBSan (part of `make test`).
ASAN_BUILD ?= build-asan
# libFuzzer targets (clang); `make fuzz` runs each for FUZZ_SECONDS.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all setup configure build test test-sanitize fuzz run clean mcu

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure: setup $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	bash scripts/setup_onnxruntime.sh
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-sanitize

test-sanitize: setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=ON \
	  -DSQ_WITH_TORCH=OFF -DSQ_BUILD_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target sq_core_tests
	# (the RTL simulation and the Cortex-M checks run in the main build: their programs are not
	# built here)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -E '^(shiftadd_rtl|mcu[.])'

fuzz: setup
	@command -v clang++ >/dev/null || { echo "make fuzz: needs clang and libclang-rt-14-dev" \
	  "(apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSQ_FUZZ=ON -DSQ_WITH_TORCH=OFF -DSQ_BUILD_TESTS=OFF \
	  -DSQ_BUILD_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The C export on Cortex-M4/M7 under QEMU (docs/mcu.md): 8-bit, 4-bit and SigmaQuant assignments
# of each MCU_MODELS model checked bit for bit against the engine, with footprint and instruction
# counts against the mcu cost model (runs/mcu/), for the portable and the Cortex-M DSP kernels.
MCU_MODELS ?= models/lenet5-fmnist.sqg
MCU_IMAGES ?= 100
MCU_C_TARGET ?= portable,cortex-m-dsp
mcu: build
	bash mcu/report.sh --sigmaquant $(BUILD)/bin/sigmaquant --ref $(BUILD)/bin/sq_mcu_ref \
	  --images $(MCU_IMAGES) --c-target $(MCU_C_TARGET) $(MCU_MODELS)

run: build
	bash scripts/main_job.sh $(BUILD)/bin/sigmaquant $(RUN_DIR)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
