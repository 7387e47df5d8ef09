// Stand-in for CUDA's <library_types.h> under the host emulation: the data types and library
// property selectors of the CUDA 13.0 headers that the module uses.
#ifndef NM_EMU_LIBRARY_TYPES_H
#define NM_EMU_LIBRARY_TYPES_H

typedef enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_R_32I = 10,
  CUDA_R_16BF = 14
} cudaDataType;

typedef enum libraryPropertyType_t { MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL } libraryPropertyType;

#endif  // NM_EMU_LIBRARY_TYPES_H
