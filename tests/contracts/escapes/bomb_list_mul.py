# escape: [0]*10**9 | source: resource exhaustion
@export
def attack():
    return [0] * 10 ** 9
