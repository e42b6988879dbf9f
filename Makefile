# The two commands of the README, plus the build. CMake does the work;
# this file only names the steps.
#   make        build (warnings are errors)
#   make test   the whole suite, then again under ASan + UBSan, then the
#               threaded parts under TSan, then the fuzzers (bounded) and
#               valgrind memcheck on a subset
#   make demo   every model side by side (ioplex compare --quick), then the
#               course's exchange over every transport
#   make bench  the benchmarks (bench/; never part of the tests)
#   make install  the library, header, tool, ioplex.pc and the CMake
#               package under PREFIX (default /usr/local), staged under
#               DESTDIR if given (GNU conventions)

JOBS ?= 2
# Tests at a time. Most of a test's time is spent waiting (timeouts,
# pauses, peers), so three on two cores: the suite takes 100 s instead of
# 150 (-j 4 passes too; the per-test timeouts are 10 s and more).
TEST_JOBS ?= 3
CMAKE_FLAGS ?=

.PHONY: all build setup test test-normal test-asan test-tsan demo bench clean install

PREFIX ?= /usr/local
DESTDIR ?=

all: build

setup:
	@sh scripts/setup.sh

build: setup
	cmake -S . -B build -DIOPLEX_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j $(JOBS)

build-asan/CMakeCache.txt:
	cmake -S . -B build-asan -DIOPLEX_WERROR=ON -DIOPLEX_SANITIZE=address,undefined $(CMAKE_FLAGS) >/dev/null

test-normal: build
	ctest --test-dir build --output-on-failure -j $(TEST_JOBS)

test-asan: setup build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j $(TEST_JOBS)

# ThreadSanitizer on what runs threads: the loop's unit test (stops and
# wake-ups across threads), the tests of the thread, epoll, pool and uring
# models, model_evload under select and poll too (it runs -w 2 and -w 4),
# and chat. Left out:
#  - aio: its servers crash under TSan, in TSan's runtime: a glibc POSIX
#    AIO helper thread (started inside libc, unknown to TSan) starts
#    another, whose TLS set-up calls TSan's calloc with no thread state:
#    SIGSEGV in SizeClassAllocator64LocalCache::Allocate (gdb, gcc 12). Our
#    aio code runs on one thread; test_chat and test_post skip aio there;
#  - model_signals.*: a stop signal that arrives just before an idle
#    server blocks (poll, epoll_wait) is held by TSan's runtime and not
#    handled until something else wakes the thread: idle_sigterm fails now
#    and then under every model (gcc 12's and clang 14's TSan alike).
#    Also, under TSan the pool starts accepting 100-300 ms after printing
#    its address, and sigterm_silent_client gives it 100 ms.
TSAN_TESTS ?= ^(unit\.test_(loop|post)|model_[a-z_]+\.(thread|epoll|pool|uring)|model_evload\.(select|poll)|integration\.test_(chat|chat_churn|uring))$$
TSAN_EXCLUDE ?= ^model_signals\.

build-tsan/CMakeCache.txt:
	cmake -S . -B build-tsan -DIOPLEX_WERROR=ON -DIOPLEX_SANITIZE=thread $(CMAKE_FLAGS) >/dev/null

test-tsan: setup build-tsan/CMakeCache.txt
	cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		ctest --test-dir build-tsan --output-on-failure -j $(TEST_JOBS) -R '$(TSAN_TESTS)' -E '$(TSAN_EXCLUDE)'

test: test-normal test-asan test-tsan test-fuzz test-valgrind

demo: build
	build/ioplex compare --quick --out compare-out
	sh scripts/demo.sh build/ioplex

bench: setup
	cmake -S . -B build-bench -DIOPLEX_WERROR=ON -DIOPLEX_BENCH=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-bench -j $(JOBS)
	sh bench/idle_memory.sh build-bench

# What `make` built; cmake --install takes DESTDIR from the environment.
install: build
	DESTDIR='$(DESTDIR)' cmake --install build --prefix '$(PREFIX)'

clean:
	rm -rf build build-asan build-tsan build-bench build-fuzz

# ---- hardening: fuzzing and valgrind --------------------------------------
#   make fuzz           every libFuzzer target (fuzz/, clang, ASan + UBSan)
#                       for FUZZ_SECONDS each; the corpus grows in build-fuzz/work
#   make test-fuzz      bounded: replay fuzz/regressions and fuzz/corpus, then
#                       FUZZ_CI_SECONDS per target, FUZZ_JOBS at a time; fails
#                       on any crash, leak, sanitizer report or broken property
#   make test-valgrind  memcheck on a normal build: the unit tests, and
#                       model_exchange under iterative, thread, epoll and fork, and
#                       model_tls under epoll (a TLS exchange)
#                       with every ioplex process under valgrind (not uring:
#                       valgrind cannot see the kernel fill its buffers)
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 30
FUZZ_JOBS ?= 2
VALGRIND_TESTS ?= ^model_(exchange\.(iterative|thread|epoll|fork)|tls\.epoll)$$

.PHONY: fuzz test-fuzz test-valgrind

fuzz: setup
	sh fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS)

test-fuzz: setup
	sh fuzz/run.sh build-fuzz $(FUZZ_CI_SECONDS) $(FUZZ_JOBS)

# On the normal build: memcheck needs no build of its own.
test-valgrind: build
	sh scripts/valgrind.sh build '$(VALGRIND_TESTS)'
