# escape: complex literal | source: non-determinism
@export
def attack():
    return 1j
