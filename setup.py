"""Conv-NGC: reference (NumPy) and CUDA implementations of Convolutional Neural Generative Coding."""
from setuptools import setup

setup(
    name="convngc",
    version="0.1.0",
    description="Convolutional Neural Generative Coding (Ororbia & Mali): NumPy reference, fast CPU backend, CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=["ngc_ref", "ngc_cpu", "ngc_cuda", "ngc_cuda.kernels", "cuda_emu", "convngc", "convngc.data",
              "convngc.experiments"],        # the reproduction and the study, apart from the library
    # kernels/*.cu live at the top of the repository (one op family per file) and ship inside
    # ngc_cuda as the ngc_cuda.kernels package, so a non-editable install finds them too.
    package_dir={"ngc_cuda.kernels": "kernels"},
    package_data={"ngc_cuda.kernels": ["*.cu", "*.cuh", "*.json", "*.md"], "cuda_emu": ["*.h", "*.cpp", "*.md"]},
    install_requires=["numpy>=1.22", "scipy>=1.8", "scikit-image>=0.19", "pillow>=9", "matplotlib>=3.5",
                      "tqdm>=4.60", "numba>=0.59",       # numba: the cpu backend (ngc_cpu), compiled on first use
                      "threadpoolctl>=3"],   # `convngc reproduce`: BLAS threads fixed, numbers that do not depend on them
    extras_require={
        # compile check of kernels/*.cu for sm_80/sm_90 with NVRTC (no GPU needed) + the tests
        "dev": ["pytest>=7", "nvidia-cuda-nvrtc==13.0.88", "cuda-bindings>=13.0,<14"],
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=13"],
        # `convngc reproduce`'s Conv-AE/Conv-DAE (PyTorch) and BM3D rows. No torch version is pinned here (an
        # installed PyTorch, any build, serves): on Linux PyPI's torch is the multi-GB CUDA build, so `make test`
        # installs the pinned CPU wheel first (the Makefile's TORCH, TORCH_INDEX).
        "baselines": ["torch>=2.0", "bm3d>=4.0"],
        # `convngc reproduce` and the study's sweeps as Ray tasks: --workers N here, --address on a cluster
        # (docs/cluster.md; [client]: grpcio, for --address ray://HOST:PORT); without it, one job after another
        "cluster": ["ray[client]>=2.9"],
    },
    entry_points={"console_scripts": ["convngc=convngc.__main__:main"]},      # Ctrl-C safe from the start
)
