# The installed package from a consumer's side (CTest `api_install_example`, tests/CMakeLists.txt):
# installs the build tree into a scratch prefix, builds examples/api against it with
# find_package(SigmaQuant), runs the example on a little Fashion-MNIST, then builds the torch-free
# runner with pkg-config alone and runs it on the exported model; with -DSQ_PYTHON_EXECUTABLE,
# the installed Python package runs the same model too.
#   cmake -DSQ_SOURCE_DIR=... -DSQ_BUILD_DIR=... -DWORK_DIR=... -P cmake/check_install.cmake
foreach(v SQ_SOURCE_DIR SQ_BUILD_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_install.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT EXISTS /usr/share/datasets/fashion-mnist)
  message("SKIPPED: no Fashion-MNIST in /usr/share/datasets/fashion-mnist (scripts/setup.sh)")
  return()
endif()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("$ ${ARGN}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (exit status ${rc})")
  endif()
  set(RUN_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${SQ_BUILD_DIR} --prefix ${prefix})
file(GLOB_RECURSE config ${prefix}/*SigmaQuantConfig.cmake)
file(GLOB_RECURSE pc ${prefix}/*sigmaquant.pc)
foreach(f ${prefix}/include/sigmaquant/pipeline.h ${prefix}/include/sigmaquant/engine.h
          "${config}" "${pc}")
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# CMake consumer: warnings are errors in the examples too.
run(${CMAKE_COMMAND} -S ${SQ_SOURCE_DIR}/examples/api -B ${WORK_DIR}/build
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix}
    "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build -j 2)
run(${WORK_DIR}/build/quantize_model ${SQ_SOURCE_DIR}/models/lenet5-fmnist.sqg
    ${SQ_SOURCE_DIR}/targets/shiftadd.json ${WORK_DIR}/run 1000 300)
if(NOT RUN_OUTPUT MATCHES "integer engine accuracy ([0-9.]+)%")
  message(FATAL_ERROR "quantize_model printed no integer engine accuracy")
endif()
# Trained weights, short settings: far above chance (10 %) all the same.
if(CMAKE_MATCH_1 LESS 50)
  message(FATAL_ERROR "integer engine accuracy ${CMAKE_MATCH_1}% (expected > 50%)")
endif()
foreach(f model.sqm log.json bits.json model.sqg)
  if(NOT EXISTS ${WORK_DIR}/run/${f})
    message(FATAL_ERROR "quantize_model wrote no ${WORK_DIR}/run/${f}")
  endif()
endforeach()
run(${WORK_DIR}/build/run_sqm ${WORK_DIR}/run/model.sqm 300)

# pkg-config consumer: the torch-free runner from the .pc file alone.
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found (scripts/setup.sh installs it)")
endif()
get_filename_component(pc_dir "${pc}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
run(${PKG_CONFIG} --cflags --libs sigmaquant)
string(STRIP "${RUN_OUTPUT}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ -std=c++17 -O1 -Wall -Wextra -Werror ${SQ_SOURCE_DIR}/examples/api/run_sqm.cpp ${flags}
    -o ${WORK_DIR}/run_sqm_pc)
run(${WORK_DIR}/run_sqm_pc ${WORK_DIR}/run/model.sqm 300)

# The Python package as installed (SQ_PYTHON builds).
if(SQ_PYTHON_EXECUTABLE)
  file(GLOB_RECURSE init ${prefix}/*__init__.py)
  list(FILTER init INCLUDE REGEX "/sigmaquant/__init__.py$")
  if(NOT init)
    message(FATAL_ERROR "the Python package was not installed under ${prefix}")
  endif()
  get_filename_component(package_dir "${init}" DIRECTORY)
  get_filename_component(site_dir "${package_dir}" DIRECTORY)
  set(ENV{PYTHONPATH} ${site_dir})
  set(ENV{PYTHONDONTWRITEBYTECODE} 1)
  # (lines, not semicolons: run() takes its arguments as a CMake list)
  run(${SQ_PYTHON_EXECUTABLE} -c "import sigmaquant as sq
e = sq.Engine('${WORK_DIR}/run/model.sqm')
print(sq.__file__, e, e.evaluate(sq.load_data().test.take(300)))")
  if(NOT RUN_OUTPUT MATCHES "^${site_dir}/sigmaquant/__init__.py")
    message(FATAL_ERROR "imported sigmaquant from elsewhere than ${site_dir}")
  endif()
endif()
message("api_install_example: OK")
