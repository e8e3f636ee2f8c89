# fuzz.cmake - libFuzzer targets for the file readers (included from CMakeLists.txt).
#
# With -DRVG_FUZZ=ON and clang: builds fuzz/fuzz_*.c with -fsanitize=fuzzer,address,undefined, and
# instruments the rvg library itself (fuzzer-no-link gives libFuzzer coverage of the parsers, ASan
# and UBSan catch what they do wrong). Every other program linking rvg then links the sanitizer
# runtimes too, so the whole tree still builds in this configuration. Run with fuzz/run.sh.
option(RVG_FUZZ "Build the libFuzzer targets (clang only)" OFF)

if(RVG_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "RVG_FUZZ needs clang (libFuzzer); no fuzz targets in this build. "
                  "Configure with -DCMAKE_C_COMPILER=clang, or run fuzz/run.sh.")
elseif(RVG_FUZZ)
  set(RVG_FUZZ_SAN address,undefined)
  target_compile_options(rvg PRIVATE -fsanitize=fuzzer-no-link,${RVG_FUZZ_SAN}
                         -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
  target_link_options(rvg INTERFACE -fsanitize=${RVG_FUZZ_SAN})

  file(GLOB RVG_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
  foreach(src ${RVG_FUZZ_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
    target_compile_options(${name} PRIVATE ${RVG_WARN} -fsanitize=fuzzer,${RVG_FUZZ_SAN}
                           -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
    target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,${RVG_FUZZ_SAN})
    target_link_libraries(${name} PRIVATE rvg)
  endforeach()
endif()
