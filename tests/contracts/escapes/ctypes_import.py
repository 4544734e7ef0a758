# escape: ctypes memory access | source: ctypes-based escapes
import ctypes
@export
def attack():
    return ctypes.pythonapi
