# Included by llama.cpp's project() call when pip compiles llama-cpp-python (see the Makefile's
# LLAMA_CMAKE_ARGS). llama-cpp-python forces llama.cpp's `common` library on, but its Python
# binding loads only libllama and libggml*: `common` (chat-template parsers, an HTTP client)
# is about 40% of the compile and never used. Turning it off here, after that FORCE and
# before llama.cpp reads its options, builds exactly what `import llama_cpp` loads.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
