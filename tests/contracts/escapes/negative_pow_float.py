# escape: negative exponent making a float | source: non-determinism
@export
def attack():
    return 2 ** -1
