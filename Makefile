# The two commands of the README:
#   make run   — the main job on the default data (Fashion-MNIST)
#   make test  — the whole test suite (CTest + GoogleTest)
# Both install missing Debian packages (scripts/setup.sh, idempotent), configure and build.

BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
RUN_DIR  ?= runs/default

.PHONY: all setup configure build test run clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure: setup $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	bash scripts/main_job.sh $(BUILD)/bin/sigmaquant $(RUN_DIR)

clean:
	rm -rf $(BUILD)
