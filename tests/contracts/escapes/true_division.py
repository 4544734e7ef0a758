# escape: true division making a float | source: non-determinism
@export
def attack():
    return 1 / 2
