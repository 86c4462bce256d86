"""Import-compatible stand-in for `sgl_kernel` on CPU-only machines (see cpu_runtime/__init__).

Holds only names that are implemented, in plain torch. A name that is not here raises
ImportError at `from sgl_kernel import name`, which is what sglang's optional-kernel probes
(`try: from sgl_kernel import x except ImportError`) expect.
"""
