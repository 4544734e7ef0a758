# escape: float literal | source: non-determinism (floats differ across platforms)
@export
def attack():
    return 1e3
