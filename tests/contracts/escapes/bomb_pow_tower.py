# escape: 2**10**10 | source: resource exhaustion
@export
def attack():
    return 2 ** 10 ** 10
