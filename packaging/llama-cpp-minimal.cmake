# Included by llama.cpp's project() call when pip compiles llama-cpp-python (see the Makefile's
# LLAMA_CMAKE_ARGS). Two changes, both to what the Python binding needs:
#
# 1. llama-cpp-python forces llama.cpp's `common` library on, but its Python binding loads only
#    libllama and libggml*: `common` (chat-template parsers, an HTTP client) is about 40% of the
#    compile and never used. Turning it off here, after that FORCE and before llama.cpp reads
#    its options, builds exactly what `import llama_cpp` loads.
# 2. libllama (model graphs for ~160 architectures, the tokenizer, sampling) is built with -O1:
#    the arithmetic of every token runs in libggml*, which keeps -O3. Measured on 2 cores:
#    libllama's compile takes 166 s of CPU instead of 255 s, and SmolLM2-135M generates as fast
#    (120 greedy tokens: 8.1-9.8 s of CPU either way, within run-to-run noise).
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
# Deferred to the end of llama.cpp's top-level CMakeLists, when the `llama` target exists; a
# later -O wins, and target options follow CMAKE_CXX_FLAGS_RELEASE's -O3 on the command line.
cmake_language(DEFER CALL target_compile_options llama PRIVATE -O1)
