"""Running compiled code: Kernel (kernel.py) with its per-bucket buffers and arguments bound by
name (buckets.py), the per-call numpy work of compensated kernels (glue.py), the chain
kernels of LPLR and LRAMM (chain.py), one kernel from a compiled module (assemble.py), the
device a kernel runs on (device.py), and artifacts: the manifest and its checks (manifest.py,
no TVM) and loading (artifact.py)."""
