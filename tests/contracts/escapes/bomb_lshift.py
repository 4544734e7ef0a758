# escape: 1 << 10**10 | source: resource exhaustion
@export
def attack():
    return 1 << 10 ** 10
