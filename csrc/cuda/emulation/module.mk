# Builds the emulated CUDA module build-cuda-emu/newton_muon_cuda_emu.so with g++ (no nvcc): the
# module's own sources (csrc/cuda/*.cu compiled as C++, *.cc) against the stand-in headers of
# include/ with cuda_host_shim.h force-included, plus the emulation (launcher/, runtime/,
# libraries/), linked with OpenBLAS. Driven by scripts/build-cuda-emu.sh (npm run build:cuda-emu):
#   make -f csrc/cuda/emulation/module.mk OUT=build-cuda-emu -j2
# Object files and dependency files go to $(OUT)/obj; a changed header rebuilds what uses it.
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../../..)
EMU := $(ROOT)/csrc/cuda/emulation
OUT ?= $(ROOT)/build-cuda-emu
override OUT := $(abspath $(OUT))
OBJ := $(OUT)/obj
MODULE := $(OUT)/newton_muon_cuda_emu.so
CXX ?= g++

MODULE_SOURCES := $(sort $(wildcard $(ROOT)/csrc/cuda/*.cu) $(wildcard $(ROOT)/csrc/cuda/*.cc))
EMULATION_SOURCES := $(sort $(wildcard $(EMU)/launcher/*.cc) $(wildcard $(EMU)/runtime/*.cc) \
                            $(wildcard $(EMU)/libraries/*.cc))

# -ffp-contract=off: a*b+c stays two roundings unless the code asks for an FMA (fmaf, __fmaf_rn),
# so the emulation computes what the source says. -fno-strict-aliasing as nvcc's host code.
COMMON := -std=c++17 -O2 -g1 -fPIC -pthread -fvisibility=hidden -fvisibility-inlines-hidden \
          -ffp-contract=off -fno-strict-aliasing -DNM_CUDA_EMULATION=1 -I$(EMU)/include -MMD -MP \
          -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unknown-pragmas
# __CUDA_ARCH_LIST__: what nvcc defines for the sm_90 build (context.cu names the built archs).
MODULE_FLAGS := $(COMMON) -Wno-unused-function -D__CUDA_ARCH_LIST__=900 -x c++ \
                -include $(EMU)/cuda_host_shim.h -include $(EMU)/wmma_shim.h
EMULATION_FLAGS := $(COMMON)

module_obj = $(OBJ)/module/$(notdir $(1)).o
emulation_obj = $(OBJ)/emulation/$(subst /,_,$(patsubst $(EMU)/%,%,$(1))).o
MODULE_OBJECTS := $(foreach s,$(MODULE_SOURCES),$(call module_obj,$(s)))
EMULATION_OBJECTS := $(foreach s,$(EMULATION_SOURCES),$(call emulation_obj,$(s)))

SELFTEST := $(OUT)/standins_selftest
SELFTEST_OBJECT := $(OBJ)/selftest/standins_selftest.cc.o

all: $(MODULE) $(OUT)/module-entry-points.txt $(SELFTEST)

# Objects depend on this file too: changed flags rebuild everything.
THIS_MAKEFILE := $(abspath $(lastword $(MAKEFILE_LIST)))

define module_rule
$(call module_obj,$(1)): $(1) $(THIS_MAKEFILE) | $(OBJ)/module
	$(CXX) $(MODULE_FLAGS) -c $(1) -o $$@
endef
define emulation_rule
$(call emulation_obj,$(1)): $(1) $(THIS_MAKEFILE) | $(OBJ)/emulation
	$(CXX) $(EMULATION_FLAGS) -c $(1) -o $$@
endef
$(foreach s,$(MODULE_SOURCES),$(eval $(call module_rule,$(s))))
$(foreach s,$(EMULATION_SOURCES),$(eval $(call emulation_rule,$(s))))

$(OBJ)/module $(OBJ)/emulation $(OBJ)/selftest:
	mkdir -p $@

# The stand-ins' self-test (selftest/standins_selftest.cc, test/cuda-emulation-standins.test.ts),
# compiled like the module's sources and linked with the same emulation objects.
$(SELFTEST_OBJECT): $(EMU)/selftest/standins_selftest.cc $(THIS_MAKEFILE) | $(OBJ)/selftest
	$(CXX) $(MODULE_FLAGS) -c $< -o $@
$(SELFTEST): $(SELFTEST_OBJECT) $(EMULATION_OBJECTS)
	$(CXX) -pthread -o $@ $(SELFTEST_OBJECT) $(EMULATION_OBJECTS) -lopenblas -lm

# Exports the module's two entries, nm_cuda_backend_ops and nm_cuda_comm_ops (NCCL collectives),
# and nm_cuda_emulation_info; every symbol must resolve at link time, as for the real module.
$(MODULE): $(MODULE_OBJECTS) $(EMULATION_OBJECTS) $(EMU)/module.map
	$(CXX) -shared -pthread -o $@ $(MODULE_OBJECTS) $(EMULATION_OBJECTS) \
	  -Wl,--version-script=$(EMU)/module.map -Wl,--no-undefined -lopenblas -lm

# The CUDA / cuBLAS / cuSOLVER / cub / NCCL entry points the module's own code calls: what its
# objects leave undefined and the emulation defines (the coverage report's list of entry points).
$(OUT)/module-entry-points.txt: $(MODULE_OBJECTS) $(EMULATION_OBJECTS)
	nm -C --defined-only $(EMULATION_OBJECTS) | awk '$$2 ~ /^[TW]$$/ {$$1=""; $$2=""; sub(/^  /, ""); print}' \
	  | sed -e 's/(.*//' -e 's/^cudaError //' | sort -u > $(OUT)/emulation-symbols.txt
	nm -C -u $(MODULE_OBJECTS) | awk '$$1 == "U" {$$1=""; sub(/^ /, ""); print}' \
	  | sed -e 's/(.*//' -e 's/^cudaError //' | sort -u \
	  | grep -E '^(cuda|cublas|cusolver|nccl|cub::)' | grep -Fx -f $(OUT)/emulation-symbols.txt > $@

-include $(MODULE_OBJECTS:.o=.d) $(EMULATION_OBJECTS:.o=.d) $(SELFTEST_OBJECT:.o=.d)

.PHONY: all
