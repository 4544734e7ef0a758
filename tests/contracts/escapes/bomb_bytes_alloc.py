# escape: bytes(10**10) | source: resource exhaustion
@export
def attack():
    return bytes(10 ** 10)
