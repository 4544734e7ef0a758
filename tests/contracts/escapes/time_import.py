# escape: wall-clock time | source: non-determinism
import time
@export
def attack():
    return time.time()
