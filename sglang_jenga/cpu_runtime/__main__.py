"""`python -m sglang_jenga.cpu_runtime [install|uninstall]`: manage the CPU runtime's .pth hook."""

import sys

from sglang_jenga.cpu_runtime import install_pth, uninstall_pth

if __name__ == "__main__":
    if sys.argv[1:] == ["uninstall"]:
        uninstall_pth()
    else:
        print(install_pth())
