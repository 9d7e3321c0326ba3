// launcher_main.cpp: main() of the sanitizer flavour (EmuModule(sanitize=True)).
//
// cuda_emu/module.py appends `#include "launcher_main.cpp"` to the generated translation unit and builds an
// executable with -fsanitize=address,undefined. One process runs one launch, so ASan's runtime is
// loaded the normal way (no LD_PRELOAD into Python) and a report ends only this process.
// Each memory region is read from its own file into a malloc'd buffer of exactly its size (so ASan's
// redzones sit right at the array ends) and written back after the launch. Spec file lines:
//   kernel NAME
//   cfg GX GY GZ BX BY BZ SHARED_MEM SHARED_MEM_CAP ORDER SEED FILL
//   region NBYTES PATH              (one buffer; arrays that overlap share one region)
//   arg p REGION OFFSET             (pointer argument)
//   arg s NBYTES HEX                (scalar argument, raw little-endian bytes)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s SPEC\n", argv[0]); return 2; }
    FILE* spec = fopen(argv[1], "r");
    if (!spec) { perror(argv[1]); return 2; }
    char word[64], name[256] = "";
    cuda_emu::LaunchCfg cfg;
    memset(&cfg, 0, sizeof cfg);
    std::vector<char*> regions;
    std::vector<size_t> sizes;
    std::vector<std::string> paths;
    std::vector<std::vector<unsigned char>> scalars;
    std::vector<void*> ptrs;            // pointer values (for 'p' args)
    std::vector<int> is_ptr;
    while (fscanf(spec, "%63s", word) == 1) {
        if (!strcmp(word, "kernel")) {
            if (fscanf(spec, "%255s", name) != 1) return 2;
        } else if (!strcmp(word, "cfg")) {
            if (fscanf(spec, "%u %u %u %u %u %u %llu %llu %d %llu %d", &cfg.grid[0], &cfg.grid[1], &cfg.grid[2],
                       &cfg.block[0], &cfg.block[1], &cfg.block[2], &cfg.shared_mem, &cfg.shared_mem_cap, &cfg.order,
                       &cfg.seed, &cfg.fill_shared) != 11) return 2;
        } else if (!strcmp(word, "region")) {
            size_t n; char path[4096];
            if (fscanf(spec, "%zu %4095s", &n, path) != 2) return 2;
            char* buf = (char*)malloc(n ? n : 1);
            FILE* f = fopen(path, "rb");
            if (!f || fread(buf, 1, n, f) != n) { fprintf(stderr, "cannot read %s\n", path); return 2; }
            fclose(f);
            regions.push_back(buf); sizes.push_back(n); paths.push_back(path);
        } else if (!strcmp(word, "arg")) {
            char kind[8];
            if (fscanf(spec, "%7s", kind) != 1) return 2;
            if (kind[0] == 'p') {
                size_t r, off;
                if (fscanf(spec, "%zu %zu", &r, &off) != 2 || r >= regions.size()) return 2;
                ptrs.push_back(regions[r] + off); is_ptr.push_back(1); scalars.emplace_back();
            } else {
                size_t n; char hex[64];
                if (fscanf(spec, "%zu %63s", &n, hex) != 2 || n > 8) return 2;
                std::vector<unsigned char> b(8, 0);
                for (size_t i = 0; i < n; ++i) { unsigned v; sscanf(hex + 2 * i, "%2x", &v); b[i] = (unsigned char)v; }
                scalars.push_back(b); ptrs.push_back(nullptr); is_ptr.push_back(0);
            }
        } else { fprintf(stderr, "bad spec word %s\n", word); return 2; }
    }
    fclose(spec);
    std::vector<void*> argv_ptrs(ptrs.size());
    for (size_t i = 0; i < ptrs.size(); ++i) argv_ptrs[i] = is_ptr[i] ? (void*)&ptrs[i] : (void*)scalars[i].data();
    int k = 0;
    while (__emu_kernel_names[k] && strcmp(__emu_kernel_names[k], name)) ++k;
    if (!__emu_kernel_names[k]) { fprintf(stderr, "cuda_emu error: no kernel %s\n", name); return 2; }
    char err[2048];
    int rc = __emu_kernel_fns[k](&cfg, argv_ptrs.data(), err, (int)sizeof err);
    if (rc) { fprintf(stderr, "cuda_emu error: %s\n", err); return 3; }
    for (size_t r = 0; r < regions.size(); ++r) {
        FILE* f = fopen(paths[r].c_str(), "wb");
        if (!f || fwrite(regions[r], 1, sizes[r], f) != sizes[r]) { fprintf(stderr, "cannot write %s\n", paths[r].c_str()); return 2; }
        fclose(f);
        free(regions[r]);
    }
    return 0;
}
