# Synapse build. `make` builds ./synapse (optimised); `make test` runs every test; see `make help`.
# Objects go to $(BUILD) (build/ by default, build/asan for the sanitizer build), with
# dependency files, so the build is incremental and safe under -j.

CC       ?= gcc
ifeq ($(origin CC),default)
CC       := gcc
endif
# CUDA=1 adds the CUDA backend (src/engine/cuda/) and builds into build/cuda/ by default.
CUDA     ?= 0
ifeq ($(CUDA),1)
BUILD    ?= build/cuda
BIN      ?= build/cuda/synapse
endif
BUILD    ?= build
BIN      ?= synapse
OPT      ?= -O2 -g
SAN      ?=
MODEL    ?= ../shared/models/stories260K.gguf
SHARED   ?= $(abspath ../shared)
FUZZ_SECONDS ?= 15

WARN     := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wwrite-strings
ifeq ($(CI),true)
WARN     += -Werror
endif
CPPFLAGS := -Iinclude -Isrc -Itests -D_GNU_SOURCE
CFLAGS   := -std=c11 $(OPT) $(WARN) -pthread -fno-strict-aliasing $(SAN) $(EXTRA_CFLAGS)
LDFLAGS  := -pthread $(SAN)
LDLIBS   := -lhiredis -levent -ljansson -lcurl -lcrypto -lm

LIB_SRC  := $(wildcard src/common/*.c src/engine/*.c src/engine/cpu/*.c src/queue/*.c \
                       src/worker/*.c src/gateway/*.c src/aws/*.c src/bench/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c tests/unit/*.c tests/integration/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)

# ---- CUDA=1: nvcc for src/engine/cuda/*.cu, sm_90a code plus compute_80 PTX (JIT-compiled by
# the driver for any other GPU of compute capability >= 8.0); static cudart and cuBLAS, never
# libcuda, so the binary starts (and falls back to the CPU backend) on machines without a driver.
ifeq ($(CUDA),1)
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=compute_80
NVWARN    := -Xcompiler -Wall,-Wextra --Werror all-warnings
NVFLAGS   := -std=c++17 -O2 -g -lineinfo $(CUDA_ARCH) $(NVWARN) -Xcompiler -fno-strict-aliasing \
             $(EXTRA_NVFLAGS)
CPPFLAGS  += -DSYN_HAVE_CUDA
CU_SRC    := $(wildcard src/engine/cuda/*.cu)
CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ   += $(CU_OBJ)
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt \
             -lcudart_static -ldl -lrt -lstdc++

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVFLAGS) -MMD -MP -c $< -o $@
endif
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libsynapse.a
TESTS    := $(BUILD)/synapse-tests

.PHONY: all help test asan test-asan fuzz bench run clean format format-check deps

all: $(BIN) $(TESTS)

help:
	@echo "make              build ./synapse and the test runner (optimised)"
	@echo "make test         install missing packages, build, run unit + integration tests"
	@echo "make asan         build with AddressSanitizer + UBSan into build/asan/"
	@echo "make test-asan    run the tests against the sanitizer build"
	@echo "make fuzz         run every libFuzzer target for FUZZ_SECONDS (default 15) each"
	@echo "make bench        run the benchmarks in bench/"
	@echo "make run          install, build and run the whole stack (synapse up) with MODEL"
	@echo "                  (default ../shared/models/stories260K.gguf) on PORT (default 8080)"
	@echo "make observe      as make run, with Prometheus, Pushgateway and redis_exporter (--observability)"
	@echo "make format-check check formatting with .clang-format; make format rewrites"
	@echo "make clean        remove build outputs"
	@echo "make CUDA=1 ...   the same with the CUDA backend (nvcc; into build/cuda/);"
	@echo "                  scripts/gpu-check.sh runs its checks on a GPU machine"

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(TESTS): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(LIB) $(LDLIBS)

# The tests find the binary, the shared data and their scratch space through the environment.
TEST_ENV := SYNAPSE_BIN=$(abspath $(BIN)) SYNAPSE_SHARED=$(SHARED) SYNAPSE_ROOT=$(CURDIR)

test: deps
	@$(MAKE) --no-print-directory all
	@$(TEST_ENV) $(TESTS) $(T)

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/synapse OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all

test-asan: deps asan
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		SYNAPSE_BIN=$(abspath build/asan/synapse) SYNAPSE_SHARED=$(SHARED) SYNAPSE_ROOT=$(CURDIR) \
		SYNAPSE_TEST_SANITIZED=1 build/asan/synapse-tests $(T)

# libFuzzer targets: clang, every library source, one driver per parser, each run for a bounded
# time on a copy of its seed corpus (tests/fuzz/corpus/NAME) with its dictionary if present.
FUZZ_BUILD := build/fuzz
FUZZ_BINS  := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_FLAGS := -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
              $(CPPFLAGS) -DSYN_FUZZING -pthread

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

fuzz: deps $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		name=$$(basename $$f); work=$$(mktemp -d); \
		if [ -d tests/fuzz/corpus/$$name ]; then cp -r tests/fuzz/corpus/$$name/. $$work/; fi; \
		dict=""; if [ -f tests/fuzz/$$name.dict ]; then dict="-dict=tests/fuzz/$$name.dict"; fi; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$f $$work $$dict -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | tail -n 3; \
		rm -rf $$work; \
	done

bench: all
	@bench/run.sh

# The whole stack on one machine: private Redis, gateway on PORT, autoscaled workers for MODEL.
PORT ?= 8080
run: deps
	@$(MAKE) --no-print-directory $(BIN)
	./$(BIN) up --model $(MODEL) --port $(PORT)

# The same stack with Prometheus, a Pushgateway and redis_exporter (docs/metrics.md).
.PHONY: observe
observe: deps
	@$(MAKE) --no-print-directory $(BIN)
	./$(BIN) up --model $(MODEL) --port $(PORT) --observability

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: ok"

format:
	@clang-format -i $(FORMAT_FILES)

clean:
	rm -rf build $(BIN)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
