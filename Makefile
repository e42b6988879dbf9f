# The two commands of the README, plus the build. CMake does the work;
# this file only names the steps.
#   make        build (warnings are errors)
#   make test   the whole suite, then again under ASan + UBSan
#   make demo   the course's exchange over every transport

JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all build setup test test-normal test-asan demo clean

all: build

setup:
	@sh scripts/setup.sh

build: setup
	cmake -S . -B build -DIOPLEX_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j $(JOBS)

build-asan/CMakeCache.txt:
	cmake -S . -B build-asan -DIOPLEX_WERROR=ON -DIOPLEX_SANITIZE=address,undefined $(CMAKE_FLAGS) >/dev/null

test-normal: build
	ctest --test-dir build --output-on-failure -j $(JOBS)

test-asan: setup build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j $(JOBS)

test: test-normal test-asan

demo: build
	sh scripts/demo.sh build/ioplex

clean:
	rm -rf build build-asan
