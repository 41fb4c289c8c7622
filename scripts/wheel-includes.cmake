# Injected with -DCMAKE_PROJECT_INCLUDE when building an interface package against the PyPI ROS 2 wheels.
# Their exported <pkg>__rosidl_generator_py targets name the wheel builder's Python and NumPy include
# directories (/opt/python/...), which do not exist here, and CMake refuses to generate with them. At the end
# of configuring, every imported target's missing include directory is replaced by this Python's and NumPy's.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)

function(replace_missing_wheel_includes)
  get_directory_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(kept "")
    set(missing FALSE)
    foreach(dir IN LISTS dirs)
      if(dir MATCHES "^\\$<" OR EXISTS "${dir}")
        list(APPEND kept "${dir}")
      else()
        set(missing TRUE)
      endif()
    endforeach()
    if(missing)
      list(APPEND kept ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      list(REMOVE_DUPLICATES kept)
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL replace_missing_wheel_includes)
