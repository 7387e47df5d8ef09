{
  # The addon: N-API bindings + the CPU backend. No CUDA here: the CUDA backend is a separate
  # module (CMakeLists.txt) that the addon dlopens on first use of device 'cuda'.
  "targets": [
    {
      "target_name": "newton_muon",
      "sources": [
        "<!@(node -e \"const fs=require('fs');for(const d of ['csrc/napi','csrc/cpu'])for(const f of fs.readdirSync(d).sort())if(f.endsWith('.cc'))console.log(d+'/'+f)\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
